"""Measured results, written by the runs to ``results/<experiment>.json`` and rendered into the book's tables.

Every record carries its provenance, taken from the training runs themselves (mode, device, epochs, the wall time of
every seed's run), and the paper's value with its ± where it has one, so that no number in the book is typed in by
hand. Records are written atomically; a quick run never replaces a full (paper-scale) record.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from . import tables
from .files import atomic_write, check_name, folder_lock
from .mode import MODES
from .recipes import Recipe
from .history import Run

class ResultsFileError(ValueError):
    """A results file that cannot be read; the message names it."""


def results_dir() -> Path:
    """``$AAE_RESULTS_DIR`` or ``results/`` beside the running notebook (``book/results`` in the repository)."""
    return Path(os.environ.get("AAE_RESULTS_DIR", "results"))


def _finite(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be finite, got {out}")
    return out


def record(experiment: str, metric: str, values: Sequence[float], *, seeds: Sequence[int], runs: Sequence[Run],
           recipe: Recipe, paper: float | None = None, paper_std: float | None = None, **extra) -> dict:
    """Write one result (mean and sample std over seeds) to ``results/<experiment>.json`` and return it.

    ``runs`` are the training runs behind the values, one per seed: their mode, device and epochs (which must agree)
    and each one's wall time become the record's provenance. ``recipe`` is the training recipe of the models behind
    the values (:mod:`aae_tutorial.recipes`): its name ("paper" or "course") and its settings are recorded.
    ``extra`` adds fields of the experiment's own (e.g. the selected epochs); it cannot replace a standard field. A ``quick`` run never replaces a ``full`` record.
    """
    check_name(experiment, "an experiment name")
    values = _finite(values, "values")
    if not values or len(values) != len(seeds) or len(runs) != len(seeds):
        raise ValueError(f"need one value and one run per seed, got {len(values)} values and {len(runs)} runs "
                         f"for seeds {list(seeds)}")
    for field in ("mode", "device", "epochs"):
        if len({getattr(r, field) for r in runs}) != 1:
            raise ValueError(f"the runs behind one record must share their {field}: {[getattr(r, field) for r in runs]}")
    mode = runs[0].mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be an aae_tutorial.recipes.Recipe, got {type(recipe).__name__}")
    if paper is not None:
        _finite([paper] + ([paper_std] if paper_std is not None else []), "the paper's value")
    rec = {
        "experiment": experiment, "metric": metric,
        "value": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "values": [round(v, 4) for v in values], "seeds": list(seeds),
        "mode": mode, "device": runs[0].device, "epochs": runs[0].epochs,
        "wall_time_s": round(sum(r.wall_time_s for r in runs), 1),
        "wall_times_s": [round(r.wall_time_s, 1) for r in runs],
        "paper": paper, "paper_std": paper_std,
        "recipe": recipe.name, "recipe_settings": recipe.describe(),
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    if shadowed := sorted(set(extra) & set(rec)):
        raise ValueError(f"extra fields may not replace standard ones: {shadowed}")
    for field, value in extra.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"extra field {field!r} must be plain JSON (numbers, strings, lists, dicts; no NaN, "
                             f"infinity or tensors: use .item() or .tolist()), got {value!r:.80} ({e})") from e
    if not math.isfinite(rec["wall_time_s"]):
        raise ValueError(f"the runs' wall times must be finite, got {rec['wall_times_s']}")
    rec.update(extra)
    path = results_dir() / f"{experiment}.json"
    with folder_lock(path.parent):  # the check and the write, with no other writer in between
        if rec["mode"] == "quick" and _existing_mode(path) == "full":
            print(f"kept the paper-scale record in {path}; this quick run's value was {rec['value']}")
            return rec
        write_json(path, rec)
    return rec


def _existing_mode(path: Path) -> str | None:
    """The mode of the record at ``path`` (case and spaces ignored), or ``None`` if there is none. An unreadable
    record is moved aside as ``*.corrupt`` with a warning naming both files, and counts as none."""
    if not path.exists():
        return None
    try:
        return str(load(path).get("mode", "")).strip().lower()
    except ResultsFileError as e:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"{e}; moved it to {aside} (delete it once you have looked at it) and wrote the new record",
                      stacklevel=3)
        return None


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (:func:`aae_tutorial.files.atomic_write`); NaN and infinity are refused."""
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def load(path: Path) -> dict:
    """One record; a file that is not a JSON object raises :class:`ResultsFileError` naming the file."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsFileError(f"cannot read results file {path}: {type(e).__name__}: {e}") from e
    if not isinstance(rec, dict):
        raise ResultsFileError(f"results file {path} does not hold a JSON object")
    return rec


def load_all(prefix: str = "") -> list[dict]:
    """Every record whose experiment name starts with ``prefix``, sorted by name."""
    return [load(p) for p in sorted(results_dir().glob(f"{prefix}*.json"))]


def _fmt(value: float | None, std: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g} ± {std:.3g}" if std is not None else f"{value:.4g}"  # significant digits: % and MMD alike


def _field(record: dict, field: str) -> str:
    value = record.get(field)
    if value is None:
        return "–"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


#: How record IDs read in words (applied in order), for the tables' first column; the ID itself goes under the table.
WORDS = [("-", " "), ("_paper_recipe", ", paper's recipe"), ("_labels_only", ", labelled images only"),
         ("prior_match_", "match to the prior: "), ("content_follows_label_0", "content follows the label, ch. "),
         ("label_prior_", "label-conditioned prior: "), ("semisupervised_", "semi-supervised, "),
         ("clustering_k", "clustering, k = "), ("_hungarian", ", Hungarian"), ("dimred_2d_", "2-D map, "),
         ("parzen_loglik", "Parzen log-likelihood"), ("_supervised", " (supervised)"),
         ("_semisupervised", " (semi-supervised)"), ("aae", "AAE"), ("vae", "VAE"), ("_", " ")]


def readable(experiment: str) -> str:
    """A record ID in words: ``prior_match_gaussian_aae_paper_recipe`` -> ``match to the prior: gaussian AAE,
    paper's recipe``."""
    for old, new in WORDS:
        experiment = experiment.replace(old, new)
    return experiment


def table(records: Sequence[dict], title: str = "", reference: Sequence[tuple[str, str]] = (),
          columns: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table of ours-vs-paper with each run's provenance (display it with ``IPython.display.Markdown``).

    Provenance that is the same in every row (mode, device, epochs, seeds) moves to a note under the table, so that
    the table fits the page. ``reference`` adds rows of other models' results as reported in the literature:
    (model, value) pairs. ``columns`` adds (header, field) columns of the records' own fields, e.g.
    ``("categories used", "clusters_used")``; a list shows one value per seed.
    """
    provenance = {"recipe": lambda r: r.get("recipe", "–"), "mode": lambda r: r["mode"], "device": lambda r: r["device"],
                  "epochs": lambda r: r["epochs"], "seeds": lambda r: len(r["seeds"])}
    shared = {k: get(records[0]) for k, get in provenance.items() if len({get(r) for r in records}) == 1} if records else {}
    varying = [k for k in provenance if k not in shared]
    rows = [[readable(r["experiment"]), r["metric"], _fmt(r["value"], r["std"]), _fmt(r["paper"], r.get("paper_std")),
             *[_field(r, f) for _, f in columns], *[provenance[k](r) for k in varying], f"{r['wall_time_s']:.0f} s"]
            for r in records]
    if not records:
        rows.append(["(no results yet: run the chapter)"])
    rows += [[f"{model} (reported in the literature)", "", "", value] for model, value in reference]
    header = ["experiment", "metric", "ours", "paper", *[h for h, _ in columns], *varying, "wall time"]
    note = ("Every row: " + ", ".join(f"{k} {v}" for k, v in shared.items()) + ". Wall time: all seeds together. "
            if shared else "")
    if records:
        note += "Records in `book/results/`, row by row: " + ", ".join(f"`{r['experiment']}`" for r in records) + "."
    return tables.markdown(header, rows, title, note.strip())


def headline_table(rows: dict[str, str], title: str = "", folder: Path | None = None) -> str:
    """A short Markdown table of chosen results, each named in words: ``rows`` maps experiment name -> description.
    The records are read from ``folder`` (default :func:`results_dir`); one that does not exist yet (a chapter not
    run here, e.g. on Colab) shows as "not run yet". The mode, device and epochs of each run are columns, so a reader
    sees at a glance which scale the numbers come from; the record files are named in a note."""
    folder = results_dir() if folder is None else Path(folder)
    body = []
    for name, words in rows.items():
        path = folder / f"{name}.json"
        if not path.exists():
            body.append([words, "not run yet", "–", "–", "–", "–"])
            continue
        r = load(path)
        body.append([words, _fmt(r["value"], r["std"]), _fmt(r["paper"], r.get("paper_std")), r["mode"], r["device"],
                     r["epochs"]])
    note = "Records, in order: " + ", ".join(f"`{name}`" for name in rows) + f" (in `{folder}/`)."
    return tables.markdown(["result", "ours", "paper", "mode", "device", "epochs"], body, title, note)
