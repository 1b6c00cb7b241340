"""Writing results under the outputs folder: dated folders, generated names, atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
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

    def history(self, kind: str | None = None, page: int = 0, per_page: int = 24) -> tuple[list[Path], int]:
        """One page of saved images, newest first, and the number of pages (at least 1)."""
        pattern = f"{kind}/*/*" if kind else "*/*/*"
        found = [p for p in self.root.glob(pattern) if p.suffix.lstrip(".") in IMAGE_FORMATS and p.stat().st_size]
        found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        pages = max(1, -(-len(found) // per_page))
        page = min(max(page, 0), pages - 1)
        return found[page * per_page:(page + 1) * per_page], pages

    def kinds(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

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

    def save_pointcloud(self, points: np.ndarray, colors: np.ndarray, parameters: str, kind: str,
                        stem: str) -> tuple[Path, Path]:
        """A binary PLY (with the parameters as header comments) and a GLB of the same points."""
        points, colors = check_cloud(points, colors)
        paths = []
        for suffix, data in (("ply", ply_bytes(points, colors, parameters)), ("glb", glb_bytes(points, colors))):
            path = self.new_path(kind, stem, suffix)
            try:
                atomic_write(path, lambda f: f.write(data))
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            paths.append(path)
        return paths[0], paths[1]


    def save_video(self, frames: np.ndarray, fps: int, parameters: str, info: dict, kind: str,
                   stem: str) -> "SavedVideoFiles":
        """An H.264 MP4 (yuv420p, browser-playable, the parameters in its `comment` tag), a looping GIF,
        the frames as PNGs (each with the parameters) in a `-frames` folder, and a JSON of `info`."""
        frames = check_frames(frames)
        mp4 = self.new_path(kind, stem, "mp4")
        base = mp4.with_suffix("")
        written = [mp4]
        try:
            atomic_write_path(mp4, lambda tmp: write_mp4(tmp, frames, fps, parameters))
            gif = base.with_suffix(".gif")  # the MP4's number reserves the name for all of them
            written.append(gif)
            atomic_write(gif, lambda f: write_gif(f, frames, fps, parameters))
            folder = base.with_name(base.name + "-frames")
            folder.mkdir()
            written.append(folder)
            pngs = []
            for i, frame in enumerate(frames):
                png = folder / f"{i:03d}.png"
                image = Image.fromarray(frame)
                atomic_write(png, lambda f: image.save(f, "PNG", pnginfo=metadata.png_info(parameters)))
                pngs.append(png)
            meta = base.with_suffix(".json")
            written.append(meta)
            text = json.dumps({**info, "parameters": parameters, "files": {"mp4": mp4.name, "gif": gif.name,
                                                                          "frames": folder.name}}, indent=2)
            atomic_write(meta, lambda f: f.write(text.encode("utf-8")))
        except BaseException:
            for path in written:
                if path.is_dir():
                    for child in path.iterdir():
                        child.unlink(missing_ok=True)
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
            raise
        return SavedVideoFiles(mp4, gif, pngs, meta)


class SavedVideoFiles:
    def __init__(self, mp4: Path, gif: Path, frames: list[Path], info: Path):
        self.mp4, self.gif, self.frames, self.info = mp4, gif, frames, info


def check_frames(frames) -> np.ndarray:
    """(F, H, W, 3) uint8 from uint8 or float 0-1 frames."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        if not np.isfinite(frames).all():
            raise StudioError("The video has non-finite pixels (the sampler diverged): try another sampler or "
                              "fewer steps.")
        frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames are (F, H, W, 3), got {frames.shape}")
    return frames


def even_frames(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sizes: repeat the last row/column where a size is odd."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frames


def write_mp4(path: Path, frames: np.ndarray, fps: int, comment: str = "") -> None:
    """H.264 (libx264, yuv420p, +faststart) through imageio-ffmpeg's bundled ffmpeg; `comment` goes in the
    container's comment tag (ffprobe/ffmpeg show it; one line: newlines become ' | ')."""
    import imageio.v2 as imageio

    frames = even_frames(frames)
    tag = comment.replace("\r", " ").replace("\n", " | ")
    writer = imageio.get_writer(str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=1, quality=None, ffmpeg_log_level="error",
                                output_params=["-crf", "12", "-movflags", "+faststart", "-metadata", f"comment={tag}"])
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def write_gif(f, frames: np.ndarray, fps: int, comment: str = "") -> None:
    """A looping GIF (Pillow); identical consecutive frames are merged by the format's encoder."""
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(f, "GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0,
                   optimize=False, disposal=1, comment=comment.encode("utf-8")[:255])


def read_mp4_comment(path: Path) -> str:
    """The comment tag of a video file, read with the bundled ffmpeg (no ffprobe ships with it)."""
    import subprocess

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "ffmetadata", "-"],
                         capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        if line.startswith("comment="):
            return re.sub(r"\\(.)", r"\1", line[len("comment="):])  # ffmetadata escapes = ; # \ with a backslash
    return ""


def check_cloud(points, colors) -> tuple[np.ndarray, np.ndarray]:
    points, colors = np.asarray(points, np.float32), np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape or len(points) == 0:
        raise ValueError(f"a cloud is (N, 3) points and (N, 3) colours, got {points.shape} and {colors.shape}")
    if not np.isfinite(points).all():
        raise StudioError("The point cloud has non-finite coordinates (the sampler diverged): try fewer "
                          "guidance or another sampler.")
    return points, np.clip(colors, 0, 255).astype(np.uint8)


PLY_PROPERTIES = [("x", "<f4", "float"), ("y", "<f4", "float"), ("z", "<f4", "float"),
                  ("red", "u1", "uchar"), ("green", "u1", "uchar"), ("blue", "u1", "uchar")]


def ply_header(count: int, comments: str = "") -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {line}".rstrip() for line in comments.splitlines()]
    lines += [f"element vertex {count}"] + [f"property {kind} {name}" for name, _, kind in PLY_PROPERTIES]
    return ("\n".join(lines + ["end_header"]) + "\n").encode("utf-8")


def ply_bytes(points: np.ndarray, colors: np.ndarray, comments: str = "") -> bytes:
    """Binary little-endian PLY: x, y, z float32 and red, green, blue uint8 per vertex (no faces), which
    Open3D, MeshLab, CloudCompare and gr.Model3D read as a point cloud."""
    rows = np.empty(len(points), dtype=[(name, dtype) for name, dtype, _ in PLY_PROPERTIES])
    for i, axis in enumerate("xyz"):
        rows[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        rows[channel] = colors[:, i]
    return ply_header(len(points), comments) + rows.tobytes()


def glb_bytes(points: np.ndarray, colors: np.ndarray) -> bytes:
    """A glTF 2.0 binary with one POINTS primitive: float32 positions and normalised RGBA8 colours."""
    positions = np.ascontiguousarray(points, "<f4").tobytes()
    rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1).tobytes()
    count = len(points)
    gltf = {
        "asset": {"version": "2.0", "generator": "Diffusion Studio"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": 0}]}],
        "buffers": [{"byteLength": len(positions) + len(rgba)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962},
                        {"buffer": 0, "byteOffset": len(positions), "byteLength": len(rgba), "target": 34962}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3",
             "min": points.min(axis=0).tolist(), "max": points.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5121, "normalized": True, "count": count, "type": "VEC4"},
        ],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned: JSON pads with spaces, BIN with zeros
    binary = positions + rgba
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks


def atomic_write_path(path: Path, write) -> None:
    """Like `atomic_write`, for writers that need a file name (ffmpeg): `write(tmp_path)`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
