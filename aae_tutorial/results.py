"""Measured results, written by the runs to ``results/<experiment>.json`` and rendered into the book's tables.

Every record carries its provenance (mode, device, epochs, wall time, seeds) and the paper's value where it has one,
so that no number in the book is typed in by hand.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

FIELDS = ("experiment", "metric", "value", "std", "seeds", "mode", "device", "epochs", "wall_time_s", "paper")


def results_dir() -> Path:
    """``$AAE_RESULTS_DIR`` or ``results/`` beside the running notebook (``book/results`` in the repository)."""
    return Path(os.environ.get("AAE_RESULTS_DIR", "results"))


def record(experiment: str, metric: str, values: Sequence[float], *, seeds: Sequence[int], mode: str, device: str,
           epochs: int, wall_time_s: float, paper: float | None = None, paper_std: float | None = None,
           **extra) -> dict:
    """Write one result (mean and sample std over seeds) to ``results/<experiment>.json`` and return it.

    A ``quick`` run never replaces a ``full`` (paper-scale) record of the same experiment.
    """
    if not values or len(values) != len(seeds):
        raise ValueError(f"need one value per seed, got {len(values)} values for seeds {list(seeds)}")
    rec = {
        "experiment": experiment, "metric": metric,
        "value": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "values": [round(v, 4) for v in values], "seeds": list(seeds),
        "mode": mode, "device": device, "epochs": epochs, "wall_time_s": round(wall_time_s, 1),
        "paper": paper, "paper_std": paper_std,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), **extra,
    }
    path = results_dir() / f"{experiment}.json"
    if path.exists() and rec["mode"] == "quick" and load(path).get("mode") == "full":
        print(f"kept the paper-scale record in {path}; this quick run's value was {rec['value']}")
        return rec
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_all(prefix: str = "") -> list[dict]:
    """Every record whose experiment name starts with ``prefix``, sorted by name."""
    return [load(p) for p in sorted(results_dir().glob(f"{prefix}*.json"))]


def _fmt(value: float | None, std: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g} ± {std:.2g}" if std is not None else f"{value:.4g}"  # significant digits: % and MMD alike


def table(records: Sequence[dict], title: str = "") -> str:
    """A Markdown table of ours-vs-paper with each run's provenance (display it with ``IPython.display.Markdown``)."""
    lines = [f"**{title}**\n" if title else "",
             "| experiment | metric | ours | paper | mode | device | epochs | seeds | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['experiment']} | {r['metric']} | {_fmt(r['value'], r['std'])} | {_fmt(r['paper'], r.get('paper_std'))} "
            f"| {r['mode']} | {r['device']} | {r['epochs']} | {len(r['seeds'])} | {r['wall_time_s']:.0f} s |")
    if not records:
        lines.append("| (no results yet: run the chapter) | | | | | | | | |")
    return "\n".join(lines)
