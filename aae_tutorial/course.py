"""What every chapter does first and last: announce mode and device, seed, show code, summarise its runs."""
from __future__ import annotations

import inspect

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown

from . import tables
from .mode import RunMode, describe_device, run_mode
from .train import Run, pick_device, seed_everything


def start(seed: int = 0) -> tuple[RunMode, torch.device]:
    """Print the run mode (and why) and the device, seed everything, and set figure defaults."""
    mode, device = run_mode(), pick_device()
    seed_everything(seed)
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "axes.spines.top": False, "axes.spines.right": False})
    print(mode)
    print(f"Device: {describe_device(device)}")
    return mode, device


def show_source(obj) -> Markdown:
    """Display the source of a package function or class, so the chapter shows the algorithm it runs."""
    return Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```")


def summary(runs: list[Run]) -> Markdown:
    """A table of this chapter's training runs: epochs and wall time of each; mode and device, shared, below it."""
    rows = [[r.name, r.epochs, f"{r.wall_time_s:.1f} s", "checkpoint" if r.from_checkpoint else "trained in this run"]
            for r in runs]
    rows.append(["**total**", "", f"**{sum(r.wall_time_s for r in runs):.0f} s**", ""])
    settings = sorted({f"{r.mode} mode on {r.device}" for r in runs})
    note = (f"Runs in {', '.join(settings)}. The wall time is that of the training run that produced the weights, "
            "also when they were loaded from a checkpoint.")
    return Markdown(tables.markdown(["run", "epochs", "wall time", "weights"], rows, note=note))
