"""Single-token vocabularies and token positions for the task generators (:mod:`~locedit.circuits.ioi`,
:mod:`~locedit.circuits.colored_objects`).

Vocabularies are filtered to words that are a single token with a leading space for the model's tokenizer (SmolLM2
loses "mug", "leash" and "bracelet" from the 17 Colored Objects objects); words passed explicitly must be single
tokens, or a ``ValueError`` names the word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def tokenizer_of(model_or_tokenizer: Any):
    """The tokenizer of a :class:`~locedit.models.Model`, or the argument itself if it is a tokenizer."""
    if hasattr(model_or_tokenizer, "spec") and hasattr(model_or_tokenizer, "hf"):
        tok = model_or_tokenizer.tokenizer
        if tok is None:
            raise ValueError(f"model {model_or_tokenizer.name!r} has no tokenizer: pass a tokenizer instead")
        return tok
    if not callable(model_or_tokenizer):
        raise TypeError(f"expected a Model or a tokenizer, got {type(model_or_tokenizer).__name__}")
    return model_or_tokenizer


def token_ids(tok, text: str, special: bool = True) -> list[int]:
    """The token ids of ``text`` (with the tokenizer's special tokens unless ``special=False``)."""
    return list(tok(text, add_special_tokens=special)["input_ids"])


def single_token_id(tok, word: str) -> int | None:
    """The id of ``word`` if it is one token, else ``None``."""
    ids = token_ids(tok, word, special=False)
    return ids[0] if len(ids) == 1 else None


def single_token_words(tok, words: Sequence[str], what: str, strict: bool, title: bool = False) -> tuple[str, ...]:
    """``words`` that are one token with a leading space (and, with ``title``, in title case too): with ``strict`` a
    ``ValueError`` names the first that is not; otherwise they are dropped."""
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise TypeError(f"{what} must be a list of strings, not {type(words).__name__}")
    kept = []
    for word in words:
        if not isinstance(word, str) or not word.strip() or word != word.strip():
            raise ValueError(f"{what}: {word!r} is not a word; give words without spaces around them ('Mary')")
        forms = [" " + word] + ([" " + word.title()] if title else [])
        bad = [form for form in forms if single_token_id(tok, form) is None]
        if not bad:
            kept.append(word)
        elif strict:
            pieces = [tok.decode([i]) for i in token_ids(tok, bad[0], special=False)]
            raise ValueError(
                f"{what}: {bad[0]!r} is {len(pieces)} tokens {pieces} for this tokenizer; every {what[:-1]} must be "
                "a single token with a leading space: remove it, or leave the list at its default (filtered for you)"
            )
    if len(set(kept)) != len(kept):
        raise ValueError(f"{what} has duplicates: {sorted({w for w in kept if kept.count(w) > 1})}")
    return tuple(kept)


def single_token_vocabulary(
    tok, given: Sequence[str] | None, default: Sequence[str], what: str, need: int, title: bool = False
) -> tuple[str, ...]:
    """``given`` (strict: every word must be a single token) or ``default`` filtered to single tokens; at least
    ``need`` words."""
    words = single_token_words(tok, default if given is None else given, what, strict=given is not None, title=title)
    if len(words) < need:
        raise ValueError(f"{what}: {len(words)} single-token words left ({list(words)}); this task needs {need}")
    return words


def token_at(tok, text: str, ids: list[int], offsets, start: int, end: int) -> int:
    """The position of the token spanning characters ``start..end`` of ``text`` (``start`` at the leading space)."""
    if offsets is not None:
        for i, (a, b) in enumerate(offsets):
            if b == end and a in (start, start + 1):
                return i
    else:  # a slow tokenizer: count the tokens of the prefix (names and colours start a token at their space)
        i = len(token_ids(tok, text[:start]))
        if token_ids(tok, text[:end])[:-1] == ids[:i] and i < len(ids):
            return i
    raise ValueError(f"{text[start:end]!r} at characters {start}..{end} is not one token of {text!r}")


def encode_with_offsets(tok, text: str) -> tuple[list[int], list | None]:
    """The token ids of ``text`` and their character offsets (``None`` for a slow tokenizer)."""
    try:
        enc = tok(text, return_offsets_mapping=True)
        return list(enc["input_ids"]), list(enc["offset_mapping"])
    except (NotImplementedError, TypeError, ValueError):
        return token_ids(tok, text), None
