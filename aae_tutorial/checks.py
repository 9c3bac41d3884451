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


def recipe(value: object, name: str = "recipe"):
    """A :class:`aae_tutorial.recipes.Recipe` (not its name, nor a bare learning rate)."""
    from .recipes import Recipe

    if not isinstance(value, Recipe):
        raise TypeError(f"{name} must be a Recipe, e.g. recipes.COURSE or recipes.PAPER, got {value!r}"
                        + (" (pass it by keyword: recipe=...)" if isinstance(value, (int, float)) else ""))
    return value


def device(value: object, name: str = "device"):
    """A ``torch.device`` that exists on this machine: ``'cuda'`` without a GPU is refused with what to pass
    instead."""
    import torch

    try:
        d = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must name a device such as 'cpu', 'cuda' or 'mps', got {value!r}") from None
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(d.type, True):
        raise ValueError(f"{name} {str(d)!r} is not available on this machine; use 'cpu', or leave it out for the "
                         "best device there is (train.pick_device())")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"{name} {str(d)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d
