"""An offline CLIP tokenizer for the shapes world, built without any files or network.

Vocabulary: CLIP's special tokens, the 256 byte-level base characters (with and without the
end-of-word suffix, so any text tokenizes), then every world word as ONE token. Merges build
each word right to left (suffix chains: "e d</w>" -> "ed</w>", "r ed</w>" -> "red</w>"), added
longest word first; every merge's right side ends a word, so only a word's last pair can ever
merge and no shorter merge can split a world word.
"""
from __future__ import annotations

from functools import lru_cache

from transformers import CLIPTokenizer

from .world import vocabulary

MODEL_MAX_LENGTH = 16
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
EXTRA_WORDS = ("an", "the", "with", "of", "in", "shape", "image", "picture", "photo")
# Words of the moving-shapes captions ("a red circle moving right"), APPENDED after the special
# tokens (see `append_words`) so every id the text-to-image model was trained with stays the same.
MOTION_WORDS = ("moving", "left", "right", "up", "down")


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def world_words(extra: tuple[str, ...] = ()) -> list[str]:
    return sorted(set(vocabulary()) | set(EXTRA_WORDS) | set(extra))


def build_vocab_and_merges(extra: tuple[str, ...] = ()) -> tuple[dict[str, int], list[str]]:
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    base = _bytes_to_unicode()
    for ch in base:
        add(ch)
    for ch in base:
        add(ch + "</w>")
    merges: list[str] = []
    seen: set[str] = set()
    for word in sorted(world_words(extra), key=lambda w: (-len(w), w)):
        if len(word) < 2:
            continue
        suffix = word[-1] + "</w>"
        for i in range(len(word) - 2, -1, -1):
            merge = f"{word[i]} {suffix}"
            suffix = word[i] + suffix
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
            add(suffix)
    add(BOS)
    add(EOS)
    return vocab, merges


def append_words(vocab: dict[str, int], merges: list[str], words: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """New words as single tokens with NEW ids after the existing ones (after BOS/EOS): the ids of
    every existing token are unchanged, so a text encoder grown by `len(new) - len(old)` rows gives
    existing prompts exactly the same embeddings. Merges are appended last; like all merges here
    their right side ends a word, so they cannot split or alter an existing world word."""
    vocab, merges = dict(vocab), list(merges)
    seen = set(merges)
    for word in sorted(words, key=lambda w: (-len(w), w)):
        suffix = word[-1] + "</w>"
        for i in range(len(word) - 2, -1, -1):
            merge = f"{word[i]} {suffix}"
            suffix = word[i] + suffix
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
            if suffix not in vocab:
                vocab[suffix] = len(vocab)
    return vocab, merges


@lru_cache(maxsize=4)
def _cached(extra: tuple[str, ...] = (), appended: tuple[str, ...] = ()) -> tuple[dict[str, int], list[str]]:
    vocab, merges = build_vocab_and_merges(extra)
    return append_words(vocab, merges, appended) if appended else (vocab, merges)


def build_tokenizer(model_max_length: int = MODEL_MAX_LENGTH, extra_words: tuple[str, ...] = (),
                    appended_words: tuple[str, ...] = ()) -> CLIPTokenizer:
    """`extra_words` (e.g. the 3D world's shape names) become single tokens too; without them the
    vocabulary is exactly the one the 2D demo model was trained with. `appended_words` (e.g.
    MOTION_WORDS) become single tokens with ids after the special tokens (`append_words`)."""
    vocab, merges = _cached(tuple(sorted(extra_words)), tuple(sorted(appended_words)))
    tok = CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(' ')) for m in merges], model_max_length=model_max_length,
                        bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)
    return tok


def check_tokenizer(tok: CLIPTokenizer, extra_words: tuple[str, ...] = (), appended_words: tuple[str, ...] = ()) -> None:
    """Raise if a world word (or an appended word) is not a single token."""
    for w in world_words(tuple(extra_words)) + list(appended_words):
        ids = tok(w, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise AssertionError(f"{w!r} -> {tok.convert_ids_to_tokens(ids)}")


if __name__ == "__main__":
    t = build_tokenizer()
    check_tokenizer(t)
    print(len(t), t("a purple triangle on a orange background").input_ids)
    print(t.convert_ids_to_tokens(t("Hello, wörld! 🙂 red").input_ids))
