"""What every chapter does first and last: announce mode and device, seed, show code, summarise its runs."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
from IPython.display import Markdown

from . import figures, plan, tables
from .files import read_json
from .experiments import RunMode, run_mode
from .train import describe_device
from .train import Run, pick_device, seed_everything

#: Each chapter's measured wall time per mode, shipped with the package so that a chapter opened on Colab (without
#: the repository's book/results) can say how long it will take. Written by :mod:`aae_tutorial.full_course`.
TIMES = Path(__file__).resolve().parent / "course_times.json"


def start(seed: int = 0, chapter: str | None = None) -> tuple[RunMode, torch.device]:
    """Print the run mode (and why) and the device, seed everything, and set figure defaults.

    In full mode, ``chapter`` (the notebook's name, e.g. ``"06_semisupervised"``) also prints the chapter's projected
    training time on this device (:mod:`aae_tutorial.plan`), how long it took when it was last measured at paper
    scale, and how to switch to quick mode instead.
    """
    mode, device = run_mode(), pick_device()
    seed_everything(seed)
    figures.use_book_style()
    print(mode)
    print(f"Device: {describe_device(device)}")
    if mode.full and chapter is not None:
        if projected := plan.chapter_line(chapter, describe_device(device)):
            print(projected)
        print(expected_time(chapter))
    return mode, device


def is_times(value: object) -> bool:
    """Whether ``value`` has the shape of ``course_times.json``: mode -> chapter -> {wall_time_s, device, date}."""
    return isinstance(value, dict) and all(
        isinstance(chapters, dict) and all(isinstance(c, dict) and {"wall_time_s", "device", "date"} <= set(c)
                                           for c in chapters.values()) for chapters in value.values())


def expected_time(chapter: str, path: Path | None = None) -> str:
    """What a learner should expect from a full-mode run of ``chapter``, from the measured times in
    ``course_times.json`` (written by :mod:`aae_tutorial.full_course`)."""
    path = path or TIMES
    times = read_json(path, is_times, "the measured chapter times") or {}
    switch = ("To stop, interrupt the kernel: finished runs are kept as checkpoints. For a pass of minutes instead, "
              "run `%env AAE_MODE=quick` and then restart from the top.")
    if measured := times.get("full", {}).get(chapter):
        return (f"Expected time in full mode: about {measured['wall_time_s'] / 60:.0f} min, as measured on "
                f"{measured['device']} ({measured['date']}). {switch}")
    quick = times.get("quick", {}).get(chapter)
    also = (f" In quick mode it took {quick['wall_time_s'] / 60:.0f} min on {quick['device']} ({quick['date']})."
            if quick else "")
    return f"Expected time in full mode: not measured yet for this chapter.{also} {switch}"


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
