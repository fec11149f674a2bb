"""Argument checks shared by the circuits modules."""

from __future__ import annotations

import operator
from typing import Any


def whole_number(value: Any, name: str, low: int | None = 0, high: int | None = None) -> int:
    """``value`` as a plain int (Python or NumPy / torch integer, never a bool or a float) in ``low..high`` (either
    bound may be ``None``: unbounded)."""
    bad = isinstance(value, bool) or any(k in str(getattr(value, "dtype", "")) for k in ("bool", "float", "complex"))
    try:
        number = None if bad else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(f"{name} must be an int, not {type(value).__name__} {value!r} (round it with int())")
    if high is None and low is not None and number < low:
        raise ValueError(f"{name} = {number}: give an int >= {low}")
    if high is not None and ((low is not None and number < low) or number > high):
        raise ValueError(f"{name} = {number} is out of range: give {low}..{high}")
    return number
