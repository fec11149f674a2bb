"""Argument checks shared by the entry points: a wrong type fails at once, with a message naming the argument and
the fix, instead of deep inside a tokenizer or a tensor constructor (issue #19, "nothing silently wrong")."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping

import torch


def integer(value, name: str, minimum: int | None = None, fix: str = "", maximum: int | None = None) -> int:
    """``value`` as a Python int (numpy and torch integers accepted, via ``operator.index``; bools and floats are
    not) in ``minimum..maximum`` (either may be ``None``): ``TypeError`` / ``ValueError`` naming ``name`` and, if
    given, ``fix``."""
    hint = f": {fix}" if fix else ""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not a bool{hint}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}{hint}") from None
    if maximum is not None and not (minimum or 0) <= value <= maximum:
        raise ValueError(f"{name} = {value} is out of range {minimum or 0}..{maximum}{hint}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}{hint}")
    return value


def string(value, name: str, example: str = "") -> str:
    """``value`` itself if it is a ``str``; else a ``TypeError`` naming ``name`` (and an example of a good value)."""
    if not isinstance(value, str):
        hint = f", e.g. {example!r}" if example else ""
        raise TypeError(f"{name} must be a string{hint}; got {type(value).__name__} {value!r}")
    return value


def prompt_list(prompts, one: bool = False, allow_empty: bool = False) -> list[str]:
    """``prompts`` as a list of strings, or a TypeError / ValueError that names the problem and the fix."""
    if isinstance(prompts, str):
        prompts = [prompts]
    elif one:
        raise TypeError(
            f"give one prompt as a string, not a {type(prompts).__name__}; for several prompts at once use "
            "next_token_probs or encode"
        )
    elif isinstance(prompts, Iterable) and not isinstance(prompts, bytes | bytearray | Mapping | torch.Tensor):
        prompts = list(prompts)  # a list, tuple, pandas Series, NumPy array of strings …
    else:
        raise TypeError(
            f"prompts must be a string or a list of strings, not a {type(prompts).__name__}; to run token ids, "
            "call model.hf(input_ids=...) directly"
        )
    if not prompts:
        raise ValueError("no prompts given: pass a string or a non-empty list of strings")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} is a {type(prompt).__name__} ({prompt!r:.40}), not a string")
        if not prompt and not allow_empty:
            raise ValueError(f"prompt {i} is empty: the model needs at least one token of text to predict from")
    return prompts


def count(value, name: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as a plain int if it is a whole number in ``low..high`` (a Python, NumPy or one-element integer
    torch integer; never a bool or a float); otherwise a TypeError or ValueError naming ``name``."""
    dtype = str(getattr(value, "dtype", ""))
    if isinstance(value, bool) or dtype in ("bool", "torch.bool") or "float" in dtype or "complex" in dtype:
        number = None
    else:
        try:
            number = operator.index(value)
        except TypeError:
            number = None
    if number is None:
        raise TypeError(f"{name} must be a whole number, not {value!r} ({type(value).__name__})")
    if number < low or (high is not None and number > high):
        top = f"..{high:,}" if high is not None else " or more"
        raise ValueError(f"{name} = {number} is out of range: give {low}{top}")
    return number
