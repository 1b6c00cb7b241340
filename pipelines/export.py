"""Writing results under the outputs folder: dated folders, generated names, atomic writes."""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import threading
from pathlib import Path

from PIL import Image

from pipelines import metadata
from pipelines.errors import StudioError

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
_SEQUENCE = re.compile(r"^(\d{5})-")


class OutputStore:
    """Everything the studio writes goes through here, and only inside `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._lock = threading.Lock()

    def folder(self, kind: str) -> Path:
        if not re.fullmatch(r"[a-z0-9-]+", kind):
            raise ValueError(f"bad output kind {kind!r}")
        folder = self.root / kind / dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def new_path(self, kind: str, stem: str, suffix: str) -> Path:
        """A fresh `NNNNN-stem.suffix` path in today's folder (numbers increase, names never collide)."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:40] or "image"
        with self._lock:
            folder = self.folder(kind)
            numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _SEQUENCE.match(p.name))]
            number = max(numbers, default=-1) + 1
            path = folder / f"{number:05d}-{stem}.{suffix}"
            path.touch(exist_ok=False)  # reserve the name; the atomic write replaces it
        return path

    def contains(self, path: str | Path) -> bool:
        return Path(path).resolve().is_relative_to(self.root)

    def save_image(self, image: Image.Image, parameters: str, kind: str, stem: str, fmt: str = "png") -> Path:
        if fmt not in IMAGE_FORMATS:
            raise StudioError(f"Unknown output format '{fmt}': choose one of {', '.join(IMAGE_FORMATS)}.")
        if fmt == "jpg" and image.mode not in ("RGB", "L"):
            image = image.convert("L" if image.mode in ("L", "LA") else "RGB")  # JPEG has no alpha
        path = self.new_path(kind, stem, fmt)
        options = {"pnginfo": metadata.png_info(parameters)} if fmt == "png" else {
            "exif": metadata.exif_with_parameters(parameters), "quality": 95}
        try:
            atomic_write(path, lambda f: image.save(f, IMAGE_FORMATS[fmt], **options))
        except BaseException:
            path.unlink(missing_ok=True)  # no empty placeholder left behind
            raise
        return path


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
