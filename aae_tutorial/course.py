"""What every chapter does first and last: announce mode and device, seed, show code, summarise its runs."""
from __future__ import annotations

import inspect

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown

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
    """A table of this chapter's training runs: mode, device, epochs and wall time of each."""
    rows = ["| run | mode | device | epochs | wall time | weights |", "|---|---|---|---|---|---|"]
    for r in runs:
        rows.append(f"| {r.name} | {r.mode} | {r.device} | {r.epochs} | {r.wall_time_s:.1f} s "
                    f"| {'checkpoint' if r.from_checkpoint else 'trained in this run'} |")
    total = sum(r.wall_time_s for r in runs)
    rows.append(f"| **total** | | | | **{total:.0f} s** | |")
    return Markdown("\n".join(rows))
