"""User defaults that survive restarts, stored as JSON inside the outputs dir (the studio writes nowhere else)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.errors import StudioError
from pipelines.export import IMAGE_FORMATS, atomic_write

log = logging.getLogger(__name__)
FILE_NAME = "studio-settings.json"


@dataclass
class StudioSettings:
    default_model: str = ""  # "" → the catalog's choice (hub model on a GPU, else the demo model)
    sampler: str = ""  # "" → the model's recommended settings
    steps: int = 0
    cfg_scale: float = 0.0
    width: int = 0
    height: int = 0
    output_format: str = "png"
    memory_policy: str = "auto"  # pipelines.memory.POLICIES: "auto" plans from free VRAM and model size

    def validate(self) -> None:
        from pipelines.memory import POLICIES

        if self.output_format not in IMAGE_FORMATS:
            raise StudioError(f"Output format must be one of {', '.join(IMAGE_FORMATS)}.")
        if self.memory_policy not in POLICIES:
            raise StudioError(f"Memory policy must be one of {', '.join(POLICIES)}.")
        if self.steps < 0 or self.cfg_scale < 0 or self.width < 0 or self.height < 0:
            raise StudioError("Default steps, CFG and size must not be negative (0 = the model's own).")


def load(folder: Path) -> StudioSettings:
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return StudioSettings()
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(StudioSettings)}
        settings = StudioSettings(**{k: v for k, v in data.items() if k in known})
        settings.validate()
        return settings
    except (ValueError, TypeError, StudioError) as error:
        log.warning("Ignoring unreadable settings file %s: %s", path, error)
        return StudioSettings()


def save(folder: Path, settings: StudioSettings) -> Path:
    settings.validate()
    path = Path(folder) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(asdict(settings), indent=2).encode()))
    return path
