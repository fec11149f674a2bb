"""Argument checks shared by the entry points: a wrong type fails at once, with a message naming the argument and
the fix, instead of deep inside a tokenizer or a tensor constructor (issue #19, "nothing silently wrong")."""

from __future__ import annotations

import operator


def integer(value, name: str, minimum: int | None = None, fix: str = "") -> int:
    """``value`` as a Python int (numpy and torch integers accepted, via ``operator.index``; bools and floats are
    not): ``TypeError`` / ``ValueError`` naming ``name`` and, if given, ``fix``."""
    hint = f": {fix}" if fix else ""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not a bool{hint}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}{hint}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}{hint}")
    return value


def string(value, name: str, example: str = "") -> str:
    """``value`` itself if it is a ``str``; else a ``TypeError`` naming ``name`` (and an example of a good value)."""
    if not isinstance(value, str):
        hint = f", e.g. {example!r}" if example else ""
        raise TypeError(f"{name} must be a string{hint}; got {type(value).__name__} {value!r}")
    return value
