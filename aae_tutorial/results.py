"""Measured results, one record per experiment and scale in ``results/<scale>/<experiment>.json``, rendered into the
book's tables.

Every record carries its provenance, taken from the training runs themselves (mode, device, epochs, the wall time of
every seed's run), and the paper's value with its ± where it has one, so that no number in the book is typed in by
hand. A chapter's record and the run command's go through one writer, :func:`write`, to the same place: an experiment
has one record at each scale, whichever road trained it last. Records are written atomically.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from . import tables
from . import __version__
from .files import atomic_write, check_name, folder_lock, read_json
from .experiments import MODES
from .recipes import Recipe
from .history import Run

class ResultsFileError(ValueError):
    """A results file that cannot be read; the message names it."""


#: The repository's records, where the paper-width records of ``python -m aae_tutorial.run --scale full`` are
#: committed (under ``full/``); a notebook that writes its own records elsewhere (the tests) still shows them.
BOOK_RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"


def results_dir() -> Path:
    """Where records are written: ``$AAE_RESULTS_DIR``; else the repository's ``book/results`` where the package runs
    from its checkout (the chapters, and the run command from anywhere); else ``results/`` beside the running
    notebook (an installed package, as on Colab)."""
    if os.environ.get("AAE_RESULTS_DIR"):
        return Path(os.environ["AAE_RESULTS_DIR"])
    return BOOK_RESULTS if BOOK_RESULTS.is_dir() else Path("results")


def record_path(name: str, scale: str, root: Path | None = None) -> Path:
    """Where the run command keeps the record of ``name`` at ``scale``: ``<root>/<scale>/<name>.json``, ``root`` by
    default :func:`results_dir`."""
    return (Path(root) if root else results_dir()) / scale / f"{name}.json"


def code_version() -> str:
    """The commit the package's code is at (``+`` where tracked files have changed since), or, outside a git checkout,
    the package's version: every record says what code made it."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        changed = subprocess.run(["git", "--no-optional-locks", "-C", str(repo), "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return f"aae_tutorial {__version__}"
    if head.returncode or not head.stdout.strip():
        return f"aae_tutorial {__version__}"
    return head.stdout.strip() + ("+" if changed.returncode == 0 and changed.stdout.strip() else "")
#: How long the paper's own runs were, as far as is known: the reproduction that transcribes the appendix trains
#: 2,000 to 5,000 epochs; the paper's text gives no count.
PAPER_EPOCHS_NOTE = ("The paper's numbers come from far longer runs than ours (the public reproduction that "
                     "transcribes its appendix trains 2,000–5,000 epochs).")


def roots(folder: Path | None = None) -> list[Path]:
    """Where records are looked for: ``folder``, else the results folder (where this process writes), then the
    repository's committed records. Under the tests the results folder is a scratch folder, so a notebook reads what
    this test run made where it made it, and the committed record elsewhere."""
    if folder is not None:
        return [Path(folder)]
    here = results_dir()
    return [here] if here.resolve() == BOOK_RESULTS.resolve() else [here, BOOK_RESULTS]


def paths(pattern: str, folder: Path | None = None) -> list[Path]:
    """The files matching ``pattern`` (e.g. ``"bench_*.json"``) under :func:`roots`, sorted by name; where two roots
    hold a file of the same name, the first root's."""
    found: dict[str, Path] = {}
    for root in roots(folder):
        for path in root.glob(pattern):
            found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


def recorded(experiment: str, scale: str, folder: Path | None = None) -> dict | None:
    """The record of ``experiment`` at ``scale`` (``<scale>/<experiment>.json`` under the first of :func:`roots` that
    has it), or ``None`` where it has not been run."""
    for root in roots(folder):
        path = root / scale / f"{experiment}.json"
        if path.is_file():
            return load_record(path)
    return None


def paper_width(experiment: str, folder: Path | None = None) -> dict | None:
    """The paper-width record of ``experiment``, or ``None`` where no paper-width run has been recorded."""
    return recorded(experiment, "full", folder)


def paper_width_cell(record: dict | None) -> str:
    """A paper-width result with its epochs beside it, e.g. ``2.1 (60 ep)``; "–" where none exists."""
    if record is None:
        return "–"
    return f"{_fmt(record['value'], record.get('std'))} ({record['epochs']} ep)"


def _width(record: dict) -> str:
    """The record's layer width; "–" for a chapter's full-scale record, which does not say."""
    return str(record["hidden"][0]) if "hidden" in record else "–"


def paper_width_note(records: Sequence[dict]) -> str:
    """Where the paper-width column comes from: width, device, precision, epochs, the epoch picked, wall time."""
    parts = [f"`{r['experiment']}`: width {_width(r)}, {r['device']}, {r['precision']}, {r['epochs']} epochs "
             f"(epoch {', '.join(map(str, r['selected_epochs']))} picked on validation), {r['wall_time_s'] / 60:.0f} min"
             for r in records]
    return ("Paper width: the paper's 1000-unit layers, trained by `python -m aae_tutorial.run NAME --scale full` "
            "and scored once on the test set; " + "; ".join(parts) + ".") if parts else ""


#: Names of the files in the results folder that are not experiment records.
RESERVED = ("quick_course", "full_course", "bench_cpu", "bench_cuda", "gpu_check")


def _finite(values: Sequence[float], what: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except OverflowError as e:
        raise ValueError(f"{what} must be finite floats, got a number too large for one ({e})") from e
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be finite, got {out}")
    return out


def record_of(exp, values: Sequence[float], *, seeds: Sequence[int], runs: Sequence[Run], **extra) -> dict:
    """:func:`record` for an experiment of the catalogue (:mod:`aae_tutorial.experiments`): its name, metric and the
    paper's value come from ``exp``."""
    return record(exp.name, exp.metric, values, seeds=seeds, runs=runs, paper=exp.paper, paper_std=exp.paper_std,
                  **extra)


#: The fields of every experiment record, whichever road made it (a chapter's :func:`record`, the run command's
#: :func:`of_seeds`); ``selected_epochs`` and ``code_version`` are ``None`` in records converted from before they
#: were kept (:func:`convert`).
SCHEMA = ("experiment", "metric", "value", "std", "values", "seeds", "mode", "device", "precision", "epochs",
          "selected_epochs", "wall_time_s", "wall_times_s", "paper", "paper_std", "recipe", "recipe_settings", "torch",
          "code_version", "date")


def _core(experiment: str, metric: str, values: Sequence[float], seeds: Sequence[int], *, mode: str, device: str,
          precision: str, epochs: int, selected_epochs: Sequence[int], wall_times_s: Sequence[float],
          paper: float | None, paper_std: float | None, recipe: Recipe) -> dict:
    """The :data:`SCHEMA` fields of a record: the mean and sample std over seeds, and the runs' provenance."""
    return {
        "experiment": experiment, "metric": metric,
        "value": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "values": [round(v, 4) for v in values], "seeds": list(seeds),
        "mode": mode, "device": device, "precision": precision, "epochs": epochs,
        "selected_epochs": list(selected_epochs),
        "wall_time_s": round(sum(wall_times_s), 1), "wall_times_s": [round(w, 1) for w in wall_times_s],
        "paper": paper, "paper_std": paper_std, "recipe": recipe.name, "recipe_settings": recipe.describe(),
        "torch": torch.__version__, "code_version": code_version(), "date": time.strftime("%Y-%m-%d"),
    }


def record(experiment: str, metric: str, values: Sequence[float], *, seeds: Sequence[int], runs: Sequence[Run],
           recipe: Recipe | None = None, paper: float | None = None, paper_std: float | None = None,
           selected_epochs: Sequence[int] | None = None, **extra) -> dict:
    """Write one result (mean and sample std over seeds) to ``results/<mode>/<experiment>.json`` and return it.

    The record goes to :func:`record_path` at the runs' mode, the place the run command writes the same experiment's
    record. ``runs`` are the training runs behind the values, one per seed: their mode, device and epochs (which must
    agree) and each one's wall time become the record's provenance. ``recipe`` is the training recipe of the models
    behind the values (:mod:`aae_tutorial.recipes`), by default the one the runs carry: its name and settings are
    recorded. ``selected_epochs`` (1-based, one per seed) are the epochs whose weights gave the values, by default the
    ones the runs picked on validation, or their last. ``extra`` adds fields of the experiment's own; it cannot replace
    a :data:`SCHEMA` field.
    """
    check_name(experiment, "an experiment name")
    if experiment.startswith(RESERVED):
        raise ValueError(f"the experiment name {experiment!r} is reserved for the course's own files "
                         f"({', '.join(RESERVED)}); choose another")
    values = _finite(values, "values")
    if not values or len(values) != len(seeds) or len(runs) != len(seeds):
        raise ValueError(f"need one value and one run per seed, got {len(values)} values and {len(runs)} runs "
                         f"for seeds {list(seeds)}")
    for field in ("mode", "device", "epochs", "precision"):
        if len({getattr(r, field) for r in runs}) != 1:
            raise ValueError(f"the runs behind one record must share their {field}: {[getattr(r, field) for r in runs]}")
    mode = runs[0].mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if recipe is None:
        carried = {r.recipe for r in runs}
        if len(carried) != 1 or None in carried:
            raise TypeError("pass recipe=: the runs carry no single recipe (a model without one, or several)")
        recipe = carried.pop()
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be an aae_tutorial.recipes.Recipe, got {type(recipe).__name__}")
    if paper is not None:
        _finite([paper] + ([paper_std] if paper_std is not None else []), "the paper's value")
    if selected_epochs is None:
        selected_epochs = [r.selected_epoch or r.epochs for r in runs]
    if len(selected_epochs) != len(runs):
        raise ValueError(f"need one selected epoch per seed, got {list(selected_epochs)} for seeds {list(seeds)}")
    rec = _core(experiment, metric, values, seeds, mode=mode, device=runs[0].device, precision=runs[0].precision,
                epochs=runs[0].epochs, selected_epochs=selected_epochs, wall_times_s=[r.wall_time_s for r in runs],
                paper=paper, paper_std=paper_std, recipe=recipe)
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
    write(rec, mode)
    return rec


def of_seeds(exp, scale: str, results: Sequence, *, hidden: tuple[int, ...], epochs_planned: int,
           device: str, precision: str) -> dict:
    """The run command's record of an experiment of the catalogue at one scale: the mean test value over its seeds
    (``results``: :class:`aae_tutorial.run.SeedResult`) and their provenance."""
    values = [r.test["value"] for r in results]
    extra = {k: [r.test[k] for r in results] for k in results[0].test if k != "value"}
    rec = _core(exp.name, exp.metric, values, [r.seed for r in results], mode=scale, device=device,
                precision=precision, epochs=min(r.epochs for r in results),
                selected_epochs=[r.selected_epoch for r in results], wall_times_s=[r.wall_time_s for r in results],
                paper=exp.paper, paper_std=exp.paper_std, recipe=exp.recipe)
    return {**rec, "title": exp.title, "scale": scale, "hidden": list(hidden), "epochs_planned": epochs_planned,
            "selected_on": "validation images (the last 10,000 training images)",
            "valid_curves": [[round(v, 4) for v in r.history.metrics["valid"]] for r in results],
            "threads": torch.get_num_threads(), "settings": exp.settings, "labels_per_class": exp.labels_per_class,
            **extra}


#: What :func:`convert` fills in where a record from before :data:`SCHEMA` lacks a field: no chapter trained under
#: autocast before ``train.fit`` took a precision (and the run command's records always named theirs); which epoch
#: gave the value, and the code, were not recorded.
CONVERTED = {"precision": "fp32", "selected_epochs": None, "code_version": None}


def convert(path: Path) -> bool:
    """Bring the experiment record at ``path`` to :data:`SCHEMA`, in its order, filling only what :data:`CONVERTED`
    names; every value it had stays as it was. Returns whether the file changed (a search's record, with ``rows``,
    is left alone)."""
    rec = load(path)
    if "rows" in rec or not RECORD_FIELDS <= set(rec):
        return False
    if missing := sorted(set(SCHEMA) - set(rec) - set(CONVERTED)):
        raise ResultsFileError(f"{path} lacks {', '.join(missing)}, which a conversion cannot know: run its "
                               "experiment again")
    new = {k: rec.get(k, CONVERTED.get(k)) for k in SCHEMA} | {k: v for k, v in rec.items() if k not in SCHEMA}
    if list(new.items()) == list(rec.items()):
        return False
    write_json(path, new)
    return True


def write(rec: dict, scale: str, root: Path | None = None, merge=None) -> Path:
    """Write a record to :func:`record_path` atomically, with no other writer in between: the one writer of every
    experiment record, a chapter's and the run command's. With ``merge``, what is written is ``merge(earlier record or
    None)`` (a search adding its rows). An earlier record that cannot be read is set aside, with a warning. Returns
    the path."""
    path = record_path(rec["experiment"], scale, root)
    with folder_lock(path.parent):
        if merge is not None:  # read_json sets an unreadable record aside itself
            rec = merge(read_json(path, lambda v: isinstance(v, dict) and isinstance(v.get("rows"), list),
                                  "the search's record"))
        else:
            _set_aside_if_unreadable(path)
        write_json(path, rec)
    return path


def _set_aside_if_unreadable(path: Path) -> None:
    """Move an unreadable record at ``path`` aside as ``*.corrupt``, with a warning naming both files."""
    if not path.exists():
        return
    try:
        load(path)
    except ResultsFileError as e:
        aside = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.corrupt")
        os.replace(path, aside)
        warnings.warn(f"{e}; moved it to {aside} (delete it once you have looked at it) and wrote the new record",
                      stacklevel=4)


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


#: The fields every experiment record has.
RECORD_FIELDS = {"experiment", "metric", "value", "mode"}


def load_record(path: Path) -> dict:
    """One experiment record; :class:`ResultsFileError` names a file that is not one, and what to do."""
    rec = load(path)
    if missing := sorted(RECORD_FIELDS - set(rec)):
        raise ResultsFileError(f"{path} is not an experiment record (it has no {', '.join(missing)}): move it out of "
                               "the results folder, or run its experiment again to write its record")
    return rec


def load_all(prefix: str = "", folder: Path | None = None, scale: str = "quick") -> list[dict]:
    """Every record at ``scale`` whose experiment name starts with ``prefix`` (``<scale>/`` under :func:`roots`),
    sorted by name. JSON files that are not experiment records (a search's, or anything else put there) are skipped,
    with a warning for those that are not a search's either."""
    out = []
    for path in paths(f"{scale}/{prefix}*.json", folder):
        rec = load(path)
        if "rows" in rec:  # a search's record
            continue
        if not RECORD_FIELDS <= set(rec):
            warnings.warn(f"{path} is not an experiment record (it has no experiment, metric, value and mode); "
                          "skipped it", stacklevel=2)
            continue
        out.append(rec)
    return out


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
    """A Markdown table of the paper beside ours, with each run's provenance (display it with
    ``IPython.display.Markdown``).

    ``records`` are this page's runs (the "ours" column, at their run mode). Where a paper-width record of the same
    experiment exists (:func:`paper_width`), a "paper width" column shows it with its epochs, and the note says how it
    was trained. Provenance that is the same in every row (mode, device, epochs, seeds) moves to a note under the
    table, so that the table fits the page. ``reference`` adds rows of other models' results as reported in the
    literature: (model, value) pairs. ``columns`` adds (header, field) columns of the records' own fields, e.g.
    ``("categories used", "clusters_used")``; a list shows one value per seed.
    """
    provenance = {"recipe": lambda r: r.get("recipe", "–"), "mode": lambda r: r["mode"], "device": lambda r: r["device"],
                  "epochs": lambda r: r["epochs"], "seeds": lambda r: len(r["seeds"])}
    shared = {k: get(records[0]) for k, get in provenance.items() if len({get(r) for r in records}) == 1} if records else {}
    varying = [k for k in provenance if k not in shared]
    wide = {r["experiment"]: paper_width(r["experiment"]) for r in records}
    wide_column = [("paper width", "")] if any(wide.values()) else []
    rows = [[readable(r["experiment"]), r["metric"], _fmt(r["paper"], r.get("paper_std")),
             *[paper_width_cell(wide[r["experiment"]]) for _ in wide_column], _fmt(r["value"], r["std"]),
             *[_field(r, f) for _, f in columns], *[provenance[k](r) for k in varying], f"{r['wall_time_s']:.0f} s"]
            for r in records]
    if not records:
        rows.append(["(no results yet: run the chapter)"])
    rows += [[f"{model} (reported in the literature)", "", value] for model, value in reference]
    header = ["experiment", "metric", "paper", *[h for h, _ in wide_column], "ours", *[h for h, _ in columns],
              *varying, "wall time"]
    note = ("Ours: " + ", ".join(f"{k} {v}" for k, v in shared.items()) + ". Wall time: all seeds together. "
            if shared else "")
    if records:
        note += "Records in `book/results/`, row by row: " + ", ".join(f"`{r['experiment']}`" for r in records) + ". "
        note += PAPER_EPOCHS_NOTE + " " + paper_width_note([w for w in wide.values() if w])
    return tables.markdown(header, rows, title, note.strip())


def headline_table(rows: dict[str, str], title: str = "", folder: Path | None = None) -> str:
    """A short Markdown table of chosen results, each named in words: ``rows`` maps experiment name -> description.

    Each row takes the paper-width record where one exists (:func:`paper_width`), else this book's own run. The
    records are read from ``folder`` (default: :func:`roots`); one that does not exist yet (a chapter not run
    here, e.g. on Colab) shows as "not run yet". The scale, device and epochs of each number are columns, and the gap
    to the paper is a column where the paper has a value, so a reader sees at a glance how far each number is from
    the paper's and what it was trained with; the record files are named in a note."""
    body, wide_count = [], 0
    for name, words in rows.items():
        r = paper_width(name, folder) or recorded(name, "quick", folder)
        if r is None:
            body.append([words, "–", "not run yet", "–", "–", "–", "–"])
            continue
        wide_count += r["mode"] == "full"
        gap = "–" if r["paper"] is None else f"{r['value'] - r['paper']:+.3g}"
        scale = f"paper width ({r['precision']})" if r["mode"] == "full" else r["mode"]
        body.append([words, _fmt(r["paper"], r.get("paper_std")), _fmt(r["value"], r["std"]), gap, scale,
                     r["device"], r["epochs"]])
    note = (f"{wide_count} of {len(rows)} rows come from a paper-width run (1000-unit layers, `python -m "
            "aae_tutorial.run NAME --scale full`); the others from this book's quick run. " if wide_count else
            "No paper-width record exists yet: every row is this book's quick run (256-unit layers, a few epochs). ")
    note += PAPER_EPOCHS_NOTE + " Records, in order: " + ", ".join(f"`{name}`" for name in rows)
    note += f" (in `{folder}/`)." if folder is not None else "."
    return tables.markdown(["result", "paper", "ours", "gap", "scale", "device", "epochs"], body, title, note)


def paper_width_records(folder: Path | None = None) -> list[dict]:
    """Every paper-width record of an experiment (``full/*.json`` under the first of :func:`roots` that has any; the
    searches of ``--sweep``, ``full/*_sweep.json``, are not experiments' records)."""
    for root in roots(folder):
        if paths := [p for p in sorted((root / "full").glob("*.json")) if not p.stem.endswith("_sweep")]:
            return [load(p) for p in paths]
    return []


def _threads(n: int | None) -> str:
    """", 1 thread"; nothing for a chapter's full-scale record, which does not say."""
    return "" if n is None else f", {n} thread{'s' * (n > 1)}"


def paper_width_table(records: Sequence[dict], title: str = "") -> str:
    """The paper-width runs with what they cost: seeds, width, device, precision, threads, epochs done of those
    planned, the epoch picked on validation, wall time and seconds per epoch, beside the paper's value and theirs."""
    rows = [[readable(r["experiment"]), _fmt(r["paper"], r.get("paper_std")), _fmt(r["value"], r.get("std")),
             ", ".join(map(str, r["seeds"])), _width(r),
             f"{r['device']}, {r['precision']}" + _threads(r.get("threads")),
             f"{r['epochs']} of {r.get('epochs_planned', r['epochs'])}", ", ".join(map(str, r["selected_epochs"])),
             f"{r['wall_time_s'] / 60:.0f} min", f"{r['wall_time_s'] / r['epochs'] / len(r['seeds']):.0f} s"]
            for r in records]
    if not rows:
        rows.append(["(no paper-width run recorded yet)"])
    note = ("Trained with `python -m aae_tutorial.run NAME --scale full`, in the background under `nice` beside other "
            "work on the same 2-core machine, so the seconds per epoch are what the run took, not the machine's best; "
            "the Performance appendix's benchmark measures that. " + PAPER_EPOCHS_NOTE)
    return tables.markdown(["experiment", "paper", "paper width", "seeds", "width", "device, precision", "epochs",
                            "epoch picked", "wall time", "per epoch"], rows, title, note)


def sweep_table(record: dict, title: str = "") -> str:
    """A search over one recipe field (``python -m aae_tutorial.run NAME --sweep FIELD ...``): each value's best
    validation score and the epoch it came at, the chosen value in bold."""
    field = record["swept"]
    extra = [k for k in record["rows"][0] if k not in (field, "valid_best", "epoch", "valid_curve", "wall_time_s")]
    rows = [[f"**{r[field]:g}** (chosen)" if r[field] == record["chosen"] else f"{r[field]:g}",
             f"{r['valid_best']:.4g}", r["epoch"], *[f"{r[k]:.4g}" for k in extra]] for r in record["rows"]]
    note = (f"Chosen on {record['chosen_on']}; {record['scale']} scale (width {record['hidden'][0]}), "
            f"{record['epochs']} epochs, seed {record['seed']}, recipe {record['recipe']}, {record['device']}, "
            f"{record['date']}. Record `{record['experiment']}`.")
    return tables.markdown([field, record["metric"], "epoch", *[k.replace("_", " ") for k in extra]], rows, title,
                           note)


def separation(better: dict, worse: dict) -> tuple[int, int, float]:
    """How clearly ``better`` beats ``worse`` (two records over the same seeds, lower values better): on how many
    seeds, of how many (paired by seed), and by how many pooled standard deviations their means differ."""
    if better["seeds"] != worse["seeds"] or len(better["seeds"]) < 2:
        raise ValueError(f"compare records over the same two or more seeds, got {better['seeds']} and {worse['seeds']}")
    wins = sum(b < w for b, w in zip(better["values"], worse["values"]))
    pooled = math.sqrt((better["std"] ** 2 + worse["std"] ** 2) / 2)
    return wins, len(better["seeds"]), (worse["value"] - better["value"]) / pooled if pooled else math.inf


def seeds_versus(better: dict, worse: dict) -> str:
    """A line comparing two records over the same seeds (lower is better): each mean ± std, on how many seeds the
    first is lower, and how far apart the means are in pooled standard deviations (:func:`separation`)."""
    wins, n, apart = separation(better, worse)
    return (f"{readable(better['experiment'])} ({_fmt(better['value'], better['std'])}) vs "
            f"{readable(worse['experiment'])} ({_fmt(worse['value'], worse['std'])}), seeds "
            f"{', '.join(map(str, better['seeds']))}, {better['epochs']} epochs: lower on {wins} of {n} seeds; the "
            f"means are {apart:.1f} pooled standard deviations apart")


def width_line(quick: dict) -> str:
    """One line that sets a quick record beside the paper-width record of the same experiment, each with its epochs,
    and the paper's value: what a chapter prints under its table."""
    wide, name = paper_width(quick["experiment"]), readable(quick["experiment"])
    paper = "" if quick["paper"] is None else f"; the paper: {_fmt(quick['paper'], quick.get('paper_std'))}"
    if wide is None:
        return f"{name}: {quick['value']:.4g} on this page ({quick['epochs']} epochs); no paper-width run yet{paper}"
    return (f"{name}: {wide['value']:.4g} at the paper's width ({wide['epochs']} epochs on {wide['device']}, "
            f"{wide['precision']}, epoch {', '.join(map(str, wide['selected_epochs']))} picked on validation) vs "
            f"{quick['value']:.4g} on this page ({quick['epochs']} epochs, width 256){paper}")
