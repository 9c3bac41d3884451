"""Argument checks shared by the package: each error names the argument, what it must be, and what it got."""
from __future__ import annotations

import math


def count(value: object, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum``; a bool or a float such as ``10.0`` is refused (pass ``int(...)``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def positive(value: object, name: str, *, zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``zero``); infinity and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
            value == 0 and not zero):
        raise ValueError(f"{name} must be a finite number {'>=' if zero else '>'} 0, got {value!r}")
    return float(value)
