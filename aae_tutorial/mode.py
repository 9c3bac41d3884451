"""Run mode: ``quick`` keeps every chapter to minutes on a 2-core CPU, ``full`` is the paper's scale.

Set with the environment variable ``AAE_MODE``; unset, it is ``quick`` on every device: paper scale is opt-in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
MODES = ("quick", "full")


@dataclass(frozen=True)
class RunMode:
    name: str  # "quick" or "full"
    reason: str

    @property
    def full(self) -> bool:
        return self.name == "full"

    def pick(self, quick: T, full: T) -> T:
        """The setting for this mode, e.g. ``epochs = mode.pick(quick=3, full=100)``."""
        return full if self.full else quick

    def __str__(self) -> str:
        return f"Run mode: {self.name} ({self.reason})"


def run_mode() -> RunMode:
    """Read ``AAE_MODE`` (quick | full). Unset, it is quick on every device: paper scale is opt-in."""
    value = os.environ.get("AAE_MODE", "").strip().lower()
    if value:
        if value not in MODES:
            raise ValueError(f"AAE_MODE must be one of {MODES}, got {value!r}")
        return RunMode(value, "set by AAE_MODE")
    return RunMode("quick", "the default; set AAE_MODE=full for paper scale")


def describe_device(device: torch.device | str) -> str:
    """A short human-readable name: ``cuda (NVIDIA H100 80GB HBM3)``, ``mps`` or ``cpu``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
