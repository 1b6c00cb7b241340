"""A local stand-in for the Hugging Face hub's HTTP API (model info and file resolve), serving
folders as repos, so the real download code (huggingface_hub, diffusers) runs offline in tests."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path]):
        self.repos = repos
        self.served: list[str] = []  # repo-relative paths whose bytes were sent
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.respond(self, body=False)

            def do_GET(self):
                hub.respond(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    def files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def respond(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?")[0]
        if path.startswith("/api/models/"):
            repo = path.removeprefix("/api/models/").split("/revision/")[0].removesuffix("/")
            if repo not in self.repos:
                return self.send(handler, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            siblings = [{"rfilename": name, "size": p.stat().st_size} for name, p in self.files(repo).items()]
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "siblings": siblings}
            return self.send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"},
                             body=body)
        for repo in self.repos:
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                name = path.removeprefix(prefix).split("/", 1)[1]
                file = self.files(repo).get(name)
                if file is None:
                    return self.send(handler, 404, b"", {"X-Error-Code": "EntryNotFound"})
                data = file.read_bytes()
                if body:
                    self.served.append(name)
                return self.send(handler, 200, data, {"X-Repo-Commit": COMMIT, "Content-Type": "application/octet-stream",
                                                      "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, body=body)
        self.send(handler, 404, b"")

    @staticmethod
    def send(handler, status: int, data: bytes, headers: dict | None = None, body: bool = True) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
