"""LoRA and textual-inversion embeddings (A1111's "extra networks"), from the models dir.

A LoRA is picked in the prompt with A1111's syntax, `<lora:name:0.8>` (or `<lora:name:0.8:0.5>` for
separate text-encoder and UNet weights); the tag is taken out of the text the model reads and kept
in the saved prompt, so an image's parameters regenerate it. An embedding is used by writing its
file name as a word of the prompt or negative prompt. Only .safetensors files load; both kinds of
file load once per model and stay attached to it (a LoRA is switched off when a prompt lacks it).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import StudioError
from pipelines.models import PICKLE_SUFFIXES, check_safetensors

LORA_DIR, EMBEDDINGS_DIR = "lora", "embeddings"  # under the models dir
TAG = re.compile(r"<lora:([^:>]*)(?::([^:>]*))?(?::([^:>]*))?>")
MAX_WEIGHT = 5.0
MAX_LORAS = 8
_embeddings_loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer → names added


@dataclass(frozen=True)
class LoraUse:
    name: str
    text_weight: float
    unet_weight: float


def split_prompt(prompt: str) -> tuple[str, list[LoraUse]]:
    """(the prompt without its `<lora:…>` tags, the LoRAs they name); a prompt without tags is unchanged."""
    uses: list[LoraUse] = []

    def take(match: re.Match) -> str:
        name = match.group(1).strip()
        if not name:
            raise StudioError(f"'{match.group(0)}' names no LoRA: write <lora:name:weight>.")
        text_weight = parse_weight(match.group(2), 1.0, name)
        uses.append(LoraUse(name, text_weight, parse_weight(match.group(3), text_weight, name)))
        return " "

    clean = TAG.sub(take, prompt or "")
    if not uses:
        return prompt or "", []
    names = [use.name for use in uses]
    if len(set(names)) < len(names):
        raise StudioError(f"A LoRA is named twice in the prompt ({', '.join(names)}): give each one once.")
    if len(uses) > MAX_LORAS:
        raise StudioError(f"At most {MAX_LORAS} LoRAs at once (the prompt names {len(uses)}).")
    return re.sub(r"\s*,(\s*,)+", ",", re.sub(r"\s{2,}", " ", clean)).strip(" ,"), uses


def parse_weight(text: str | None, default: float, name: str) -> float:
    if text is None or not text.strip():
        return default
    try:
        weight = float(text)
    except ValueError:
        raise StudioError(f"LoRA '{name}': weight '{text}' is not a number (write e.g. <lora:{name}:0.8>).") from None
    if not -MAX_WEIGHT <= weight <= MAX_WEIGHT:
        raise StudioError(f"LoRA '{name}': weight must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g} (got {weight:g}).")
    return weight


def files(models_dir: Path, kind: str) -> dict[str, Path]:
    """name → .safetensors file of a LoRA (kind "lora") or embedding ("embeddings") folder."""
    folder = Path(models_dir) / kind
    found = sorted(folder.glob("*.safetensors"), key=lambda p: p.stem.lower()) if folder.is_dir() else []
    return {p.stem: p for p in found}


def lora_names(models_dir: Path) -> list[str]:
    return list(files(models_dir, LORA_DIR))


def embedding_names(models_dir: Path) -> list[str]:
    return list(files(models_dir, EMBEDDINGS_DIR))


def short_hash(path: Path) -> str:
    """A1111's short hash: the first 12 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def lora_file(models_dir: Path, name: str) -> Path:
    found = files(models_dir, LORA_DIR).get(name)
    if found:
        return found
    folder = Path(models_dir) / LORA_DIR
    if any((folder / f"{name}{suffix}").is_file() for suffix in PICKLE_SUFFIXES):
        raise StudioError(f"LoRA '{name}' is a pickle file, which can run code when loaded: only .safetensors "
                          f"LoRAs load (convert it, or get the .safetensors version).")
    known = ", ".join(lora_names(models_dir)) or f"none yet — put .safetensors files in {folder}"
    raise StudioError(f"No LoRA named '{name}'. Available: {known}.")


def adapter_name(name: str) -> str:
    return re.sub(r"\W", "_", name)  # peft adapter names become module attribute keys


def apply_loras(pipe, models_dir: Path, uses: list[LoraUse], model_name: str) -> dict:
    """Load what `uses` names (once per model), set their weights, switch the others off; the
    metadata fields."""
    paths = {use.name: lora_file(models_dir, use.name) for use in uses}
    loaded = {a for names in pipe.get_list_adapters().values() for a in names} if loaded_any(pipe) else set()
    for use in uses:
        if adapter_name(use.name) not in loaded:
            check_safetensors(paths[use.name])
            try:
                pipe.load_lora_weights(str(paths[use.name]), adapter_name=adapter_name(use.name))
            except (ValueError, KeyError, RuntimeError, TypeError) as error:
                pipe.delete_adapters([adapter_name(use.name)]) if loaded_any(pipe) else None
                raise StudioError(f"LoRA '{use.name}' does not fit '{model_name}': it was made for another "
                                  f"model family or is not a LoRA ({str(error)[:200]}).") from None
    if not uses:
        if loaded:
            pipe.disable_lora()
        return {}
    pipe.enable_lora()
    components = pipe.get_list_adapters()
    weights = [{part: (use.text_weight if part.startswith("text_encoder") else use.unet_weight)
                for part, names in components.items() if adapter_name(use.name) in names} for use in uses]
    pipe.set_adapters([adapter_name(use.name) for use in uses], adapter_weights=weights)
    hashes = ", ".join(f"{use.name}: {short_hash(paths[use.name])}" for use in uses)
    return {"Lora hashes": hashes}


def loaded_any(pipe) -> bool:
    return any(getattr(getattr(pipe, part, None), "peft_config", None) for part in ("unet", "text_encoder"))


def apply_embeddings(pipe, models_dir: Path, texts: list[str]) -> dict:
    """Load every embedding whose name is a word of `texts` (once per model); the metadata fields."""
    tokenizer = getattr(pipe, "tokenizer", None)
    available = files(models_dir, EMBEDDINGS_DIR)
    used = [name for name in available
            if any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for text in texts)]
    if not used:
        return {}
    if tokenizer is None or not hasattr(pipe, "load_textual_inversion"):
        raise StudioError(f"This model cannot use textual-inversion embeddings ({', '.join(used)}).")
    added = _embeddings_loaded.setdefault(tokenizer, set())
    for name in used:
        if name in added:
            continue
        check_safetensors(available[name])
        try:
            pipe.load_textual_inversion(str(available[name]), token=name)
        except (ValueError, KeyError, RuntimeError, TypeError) as error:
            raise StudioError(f"Embedding '{name}' does not fit this model ({str(error)[:200]}); if its name is "
                              f"already a word the model knows, rename the file.") from None
        added.add(name)
    return {"TI hashes": ", ".join(f"{name}: {short_hash(available[name])}" for name in used)}


def activate(pipe, models_dir: Path, prompt: str, negative_prompt: str, model_name: str
             ) -> tuple[str, str, dict]:
    """Ready `pipe` for a prompt: (prompt and negative prompt as the model reads them, metadata fields)."""
    clean, uses = split_prompt(prompt)
    clean_negative, negative_uses = split_prompt(negative_prompt)
    if negative_uses:
        raise StudioError("LoRA tags belong in the prompt, not the negative prompt (use a negative weight "
                          "instead, e.g. <lora:name:-0.5>).")
    fields = apply_loras(pipe, models_dir, uses, model_name)
    fields.update(apply_embeddings(pipe, models_dir, [clean, clean_negative]))
    return clean, clean_negative, fields
