"""The log of what was tried at the paper's width: an experiment's own record beside runs that each change one thing
(``python -m aae_tutorial.run NAME --scale full --sweep FIELD VALUE``, and the experiment's variants: the paper's
recipe, another style size), compared at equal epochs by the best validation score each reached within them. Each
run is named by how it differs from the catalogue's settings now, so a run made before a setting was adopted shows
as the change it now is. The test images play no part: a change is kept or dropped on validation alone.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from . import tables
from .experiments import CATALOGUE, get
from .recipes import NAMED, PAPER, REPRODUCTION
from .results import load, readable, roots


def _folder(folder: Path | None) -> Path | None:
    """The first ``full/`` folder of :func:`aae_tutorial.results.roots` that exists."""
    return next((root / "full" for root in roots(folder) if (root / "full").is_dir()), None)


def _best(curve: list[float], epochs: int, higher_is_better: bool) -> tuple[float, int]:
    """The best value of the first ``epochs`` entries of a validation curve and its (1-based) epoch."""
    shown = curve[:epochs]
    value = (max if higher_is_better else min)(shown)
    return value, shown.index(value) + 1


def _numbers(settings: dict, recipe: str) -> dict | None:
    """What a run trained with, as comparable numbers: its rates and its model settings; ``None`` where its record
    does not say (records of searches before 2026-12-07 were converted to say it)."""
    if recipe not in NAMED or not isinstance(settings, dict):
        return None
    r = NAMED[recipe]
    return {"lr": r.lr, "adv_lr": r.adv_lr, "clf_lr": r.clf_lr, **settings}


def _change(run: dict | None, current: dict | None, recipe: str, named: dict) -> str | None:
    """How a run differs from the catalogue's settings now: ``None`` for no difference, the paper's recipe by that
    name, else each differing value (``"z_dim 4, adv_lr 0.0002"``). A record that does not say what it trained
    with is named by what it changed (``named``: a search's base and its value)."""
    if recipe == PAPER.name:
        return "the paper's recipe and networks"
    if run is None or current is None:
        return ", ".join(f"{k} {v:g}" for k, v in named.items()) or None
    return ", ".join(f"{k} {run[k]:g}" for k in current if k in run and run[k] != current[k]) or None


def _records(experiment: str, full: Path) -> list[Path]:
    """The experiment's own record, then its variants of the same kind and labels (the paper's recipe, another
    style size) that the catalogue names; outside the catalogue, the ``_paper_recipe`` variant."""
    own = full / f"{experiment}.json"
    if experiment not in CATALOGUE:
        return [p for p in (own, full / f"{experiment}_paper_recipe.json") if p.is_file()]
    exp = CATALOGUE[experiment]
    variants = sorted(p for p in full.glob(f"{experiment}_*.json") if p.stem in CATALOGUE and
                      (CATALOGUE[p.stem].kind, CATALOGUE[p.stem].labels_per_class) == (exp.kind, exp.labels_per_class))
    return [p for p in (own, *variants) if p.is_file()]


def rows(experiment: str, epochs: int, folder: Path | None = None, higher_is_better: bool = False) -> list[dict]:
    """One row per run: ``change``, how the run differs from the catalogue's settings now (``None``: not at all;
    :func:`_change`), ``valid`` (the best validation value within ``epochs``), ``epoch``, ``epochs`` (how far the
    run went), ``clusters_used`` where logged, ``precision`` where the record gives it (the searches before
    2026-12-07 do not), and for the records of whole experiments ``swing``, the median change of the validation
    value from one epoch to the next (how much one seed's best can move by chance; ``None`` within one epoch). Runs
    shorter than ``epochs`` are left out, so that every row is compared at the same length."""
    full = _folder(folder)
    if full is None:
        return []
    exp = CATALOGUE.get(experiment)
    current = None if exp is None else _numbers(exp.settings, exp.recipe.name)
    found = []
    for path in _records(experiment, full):
        rec = load(path)
        curve = rec["valid_curves"][0]
        if len(curve) < epochs:
            continue
        value, epoch = _best(curve, epochs, higher_is_better)
        steps = [abs(b - a) for a, b in zip(curve[:epochs - 1], curve[1:epochs])]
        recipe = rec.get("recipe", PAPER.name if path.stem.endswith("_paper_recipe") else "")
        change = _change(_numbers(rec.get("settings"), recipe), current, recipe, {})
        found.append({"change": change, "valid": value, "epoch": epoch, "epochs": len(curve), "clusters_used": None,
                      "precision": rec.get("precision"), "swing": statistics.median(steps) if steps else None})
    for path in sorted(full.glob(f"{experiment}_*_sweep.json")):
        rec = load(path)
        field, base = rec["swept"], rec.get("base", {})  # base: the settings a search started from (--set)
        for row in rec["rows"]:
            if len(row["valid_curve"]) < epochs:
                continue
            value, epoch = _best(row["valid_curve"], epochs, higher_is_better)
            used = row.get("clusters_used") if epoch == row["epoch"] else None
            named = {**base, field: row[field]}
            run = _numbers(rec.get("settings"), rec.get("recipe", ""))
            change = _change(None if run is None else {**run, **named}, current, rec.get("recipe", ""), named)
            found.append({"change": change, "valid": value, "epoch": epoch, "epochs": len(row["valid_curve"]),
                          "clusters_used": used, "precision": rec.get("precision")})
    return found


def table(experiment: str, epochs: int, baseline: str, folder: Path | None = None,
          higher_is_better: bool = False) -> str:
    """The rows of :func:`rows` as a Markdown table, each with its difference from the experiment's own settings
    (named ``baseline``), best first."""
    found = rows(experiment, epochs, folder, higher_is_better)
    own = next((r for r in found if r["change"] is None), None)
    base = None if own is None else own["valid"]
    sign = -1 if higher_is_better else 1
    counted = any(r["clusters_used"] is not None for r in found)  # the clustering runs log their categories
    body = []
    for r in sorted(found, key=lambda r: sign * r["valid"]):
        delta = "" if base is None or r["change"] is None else f"{r['valid'] - base:+.2f}"
        used = ["–" if r["clusters_used"] is None else f"{r['clusters_used']:g}"] if counted else []
        body.append([r["change"] or f"none ({baseline})", f"{r['valid']:.2f}", r["epoch"], delta,
                     r["precision"] or "not recorded", *used])
    note = (f"Each run at the paper's width (1000 units), seed 0, compared over its first {epochs} epochs by its best "
            f"validation score; the test images were not used."
            + (" Categories used: on the validation images at that epoch, where the run logged it." if counted else "")
            + f" Records: `book/results/full/{experiment}*.json`."
            + ("" if own is None or own.get("swing") is None else
               f" One seed each: with {baseline}, the validation value moves by {own['swing']:.2f} from one epoch to "
               "the next (median), so a difference smaller than that is no evidence either way."))
    return tables.markdown(["change from " + baseline, "best on validation", "at epoch", "vs none",
                            "precision", *(["categories used"] if counted else [])], body,
                           f"What was tried at the paper's width ({epochs} epochs)", note)


#: Where each value of the paper's recipe comes from.
RECIPE_SOURCE = "recipes.PAPER_SOURCES, value by value"
#: The paper's values where the course departs from them, each measured by a run at the paper's width that undoes it:
#: (experiment, the setting in words, its key in the experiment's settings, or "recipe", the paper's value, the
#: :func:`rows` change that undoes it, the source of the paper's value).
DEPARTURES = [
    ("semisupervised_100_labels", "batch norm in the encoder", "batch_norm", "off", "batch_norm 0",
     "not in the paper; the transcription's Encoder (plain linear and ReLU layers) has none"),
    *[(name, "recipe and networks", "recipe", "paper", "the paper's recipe and networks", RECIPE_SOURCE)
      for name in ("semisupervised_100_labels", "semisupervised_1000_labels", "clustering_k16")],
]


def departures_table(epochs: int = 20, folder: Path | None = None) -> str:
    """Every departure of :data:`DEPARTURES` with its measured effect: the best validation value within ``epochs`` of
    the run that undoes it, beside the course's own run over the same epochs (paper width, seed 0). A departure with
    no such run yet is named in the note, never given an effect."""
    body, unmeasured = [], []
    for name, setting, key, paper, change, source in DEPARTURES:
        exp = get(name)
        found = {r["change"]: r for r in rows(name, epochs, folder, exp.higher_is_better)}
        ours = exp.recipe.name if key == "recipe" else exp.settings[key]
        ours = {True: "on", False: "off"}[ours] if isinstance(ours, bool) else str(ours)
        if None not in found or change not in found:
            unmeasured.append(f"{readable(name)}: {setting}")
            continue
        own, undone = found[None]["valid"], found[change]["valid"]
        body.append([readable(name), setting, ours, paper, f"{own:.2f} → {undone:.2f} ({undone - own:+.2f})",
                     found[change]["precision"] or "not recorded", source])
    note = (f"Each effect: the best validation error within the first {epochs} epochs of one run at the paper's "
            f"width (seed 0), the course's settings → the paper's value of that one setting (a recipe row changes "
            "the whole recipe, and the networks' batch norm and input noise with it: recipes.DEPARTURES); the test "
            f"images play no part; precision: of the run that undoes it. The transcription: {REPRODUCTION}. One seed: "
            "differences within an epoch's swing (chapters 6 and 7 give it) are no evidence."
            + (f" Not measured at the paper's width yet: {'; '.join(unmeasured)}." if unmeasured else ""))
    return tables.markdown(["experiment", "setting", "the course", "the paper", f"measured ({epochs} epochs)",
                            "precision", "source of the paper's value"], body,
                           "Where the course departs from the paper", note)
