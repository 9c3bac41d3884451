"""What full mode costs: each chapter's training runs at paper scale, how they batch, and a projected wall time.

``python -m aae_tutorial.full_course --plan`` prints this plan. The runs are the catalogue's experiments at full scale
(:mod:`aae_tutorial.experiments`), which the chapters read their settings from. A run's cost is its epochs times its
steps per epoch (one pass over the training images, 100 per minibatch and member) times the time of one step of its
ensemble. Step times come from the newest ``gpu_check`` record of the device (``book/results/gpu_check_*.json``); for
a device without one, from the one figure measured on an H100 (the categorical AAE: 2.0 ms per step captured as a
CUDA graph), assumed for every kind of step and for an ensemble of any size. Either way the result is a
**projection**, and it says which.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import tables
from .files import read_json
from .experiments import CATALOGUE, Experiment
from .recipes import PAPER

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
#: The one step time measured on a GPU before gpu_check existed: chapter 6's categorical AAE at paper width on an
#: H100, captured as a CUDA graph (16 ms eager).
H100_STEP_MS = 2.0
#: Targets for one H200 loan (15 minutes in all, at most 10 per command).
CHAPTER_TARGET_S, COURSE_TARGET_S = 8 * 60, 15 * 60


@dataclass(frozen=True)
class Ensemble:
    """Runs of one chapter trained together as one batched ensemble (one member: a single run)."""

    what: str
    step: str  # the kind of step: a case of :mod:`aae_tutorial.gpu_check`
    members: int
    epochs: int
    steps_per_epoch: int

    @property
    def model_epochs(self) -> int:
        return self.members * self.epochs


def step_case(exp: Experiment) -> str:
    """The :mod:`aae_tutorial.gpu_check` case whose step an experiment trains with."""
    if exp.kind == "prior_match":
        model, prior = exp.settings["model"], exp.settings["prior"]
        if exp.recipe is PAPER:
            return f"{model}-paper-recipe"
        return model + {"mixture": "-mixture", "swiss-roll": "-swiss-roll"}.get(prior, "")
    if exp.kind in ("semisupervised", "clustering") and exp.recipe is PAPER:
        return {"semisupervised": "semi-supervised", "clustering": "clustering"}[exp.kind] + "-paper-recipe"
    if exp.kind == "dimred":
        return "cluster-heads" if exp.labels_per_class is None else "cluster-heads-labelled"
    return {"autoencoder": "autoencoder", "vae": "vae", "parzen": "aae", "label_prior": "label-conditioned",
            "supervised": "supervised", "judge": "judge", "semisupervised": "semi-supervised",
            "labels_only": "labels-only", "clustering": "clustering"}[exp.kind]


def _chapters() -> dict[str, list[Ensemble]]:
    """Every chapter's full-mode runs, from the catalogue: one ensemble per experiment, of its seeds."""
    out: dict[str, list[Ensemble]] = {}
    for exp in CATALOGUE.values():
        out.setdefault(exp.chapter, []).append(
            Ensemble(exp.title, step_case(exp), len(exp.full.seeds), exp.full.epochs, exp.steps_per_epoch))
    return out


#: Every chapter's full-mode training, from the catalogue. Chapters 0, the results and the Performance appendix train
#: nothing; the digit judge trained in chapter 5 is loaded from its checkpoint in chapter 6.
FULL: dict[str, list[Ensemble]] = _chapters()


def newest_gpu_check(device: str, results: Path = RESULTS) -> dict | None:
    """The newest ``gpu_check`` record whose device names ``device`` (e.g. ``"H200"``), if any and not a dry run."""
    if not device.strip():
        raise ValueError("device must name a GPU, e.g. 'H200'; got an empty name")
    found = []
    for path in results.glob("gpu_check_*.json"):
        record = read_json(path, _is_gpu_check, "the gpu_check record")
        if record and not record.get("dry") and device.lower() in record["device"].lower():
            found.append(record)
    return max(found, key=lambda r: r["date"], default=None)


def _is_gpu_check(value: object) -> bool:
    """The shape :mod:`aae_tutorial.gpu_check` writes: device, date and cases with their members and step times."""
    return isinstance(value, dict) and isinstance(value.get("device"), str) and isinstance(value.get("date"), str) \
        and isinstance(value.get("cases"), dict) and all(
            isinstance(c, dict) and {"case", "members", "step_ms"} <= set(c) for c in value["cases"].values())


def step_ms(ensemble: Ensemble, check: dict | None) -> float:
    """One step of ``ensemble``: from the check's times of the ensemble sizes it measured (1, 3 and 9 members),
    linear between the two nearest and beyond the largest, else :data:`H100_STEP_MS`."""
    if check is None:
        return H100_STEP_MS
    times = sorted((c["members"], c["step_ms"]) for c in check["cases"].values() if c["case"] == ensemble.step)
    if len(times) < 2:
        raise ValueError(f"the gpu_check record of {check['device']} ({check['date']}) has no step times for the "
                         f"'{ensemble.step}' step at two ensemble sizes (it was made before that case existed): run "
                         "`python -m aae_tutorial.gpu_check` on that GPU again, or delete its record")
    (m0, t0), (m1, t1) = next(((a, b) for a, b in zip(times, times[1:]) if ensemble.members <= b[0]), times[-2:])
    return t0 + (t1 - t0) * (ensemble.members - m0) / (m1 - m0)


def project(device: str = "H200", results: Path = RESULTS) -> dict:
    """The full-mode plan with projected wall times (training only) on ``device``."""
    check = newest_gpu_check(device, results)
    source = (f"step times measured by gpu_check on {check['device']} ({check['date']})" if check else
              f"no gpu_check record for {device}, so every step is taken at {H100_STEP_MS} ms, the categorical "
              "AAE's step time measured on an H100; a slower device takes longer")
    chapters, experiments = {}, []
    for chapter, ensembles in FULL.items():
        costs = [e.epochs * e.steps_per_epoch * step_ms(e, check) / 1000 for e in ensembles]
        experiments += [(chapter, name, s) for name, s in zip(_names(chapter), costs)]
        seconds = sum(costs)
        chapters[chapter] = {"model_epochs": sum(e.model_epochs for e in ensembles), "ensembles": len(ensembles),
                             "runs": sum(e.members for e in ensembles), "projected_s": round(seconds),
                             "within_target": seconds <= CHAPTER_TARGET_S}
    total = sum(c["projected_s"] for c in chapters.values())
    return {"device": device, "source": source, "chapters": chapters, "total_projected_s": total,
            "total_within_target": total <= COURSE_TARGET_S,
            "total_model_epochs": sum(c["model_epochs"] for c in chapters.values()),
            "experiments": {name: round(s, 1) for _, name, s in experiments},
            "loans": loans(experiments) if total > COURSE_TARGET_S else []}


def _names(chapter: str) -> list[str]:
    return [e.name for e in CATALOGUE.values() if e.chapter == chapter]


def loans(experiments: list[tuple[str, str, float]], limit_s: float = CHAPTER_TARGET_S) -> list[dict]:
    """Split the book into loans of at most ``limit_s`` of projected training each, in reading order: whole
    chapters where they fit (``full_course``), experiment by experiment where a chapter does not (``run``). An
    experiment longer than a loan gets a loan of its own, flagged ``over``."""
    out: list[dict] = []
    chapters = dict.fromkeys(c for c, _, _ in experiments)
    for chapter in chapters:
        parts = [(name, s) for c, name, s in experiments if c == chapter]
        whole = sum(s for _, s in parts)
        units = [(chapter, whole, "chapter")] if whole <= limit_s else [(n, s, "experiment") for n, s in parts]
        for name, seconds, kind in units:
            if out and out[-1]["projected_s"] + seconds <= limit_s and out[-1]["kind"] == kind:
                out[-1]["items"].append(name)
                out[-1]["projected_s"] += seconds
            else:
                out.append({"kind": kind, "items": [name], "projected_s": seconds, "over": seconds > limit_s})
    for loan in out:
        loan["projected_s"] = round(loan["projected_s"])
        loan["command"] = ("python -m aae_tutorial.full_course " + " ".join(i[:2] for i in loan["items"])
                           if loan["kind"] == "chapter" else
                           "python -m aae_tutorial.run " + " ".join(loan["items"]) + " --scale full")
    return out


def markdown(plan: dict) -> str:
    """The plan as a Markdown table, labelled a projection."""
    rows = [[chapter, c["runs"], c["ensembles"], f"{c['model_epochs']:,}",
             f"{c['projected_s'] / 60:.1f} min" + ("" if c["within_target"] else " (over 8 min)")]
            for chapter, c in plan["chapters"].items()]
    rows.append(["**total**", "", "", f"**{plan['total_model_epochs']:,}**",
                 f"**{plan['total_projected_s'] / 60:.0f} min**" + ("" if plan["total_within_target"] else
                                                                   " (over 15 min)")])
    header = ["chapter", "runs", "ensembles", "model-epochs", f"projected training time on {plan['device']}"]
    note = f"A projection, not a measurement: {plan['source']}. Training only; evaluation and figures come on top."
    text = tables.markdown(header, rows, f"Full mode, planned on {plan['device']}", note)
    if plan["loans"]:
        loan_rows = [[i + 1, f"{loan['projected_s'] / 60:.1f} min" + (" (over 8 min)" if loan["over"] else ""),
                      f"`{loan['command']}`"] for i, loan in enumerate(plan["loans"])]
        text += "\n\n" + tables.markdown(
            ["loan", "projected", "command"], loan_rows, f"The book in loans of at most 8 min on {plan['device']}",
            "Whole chapters where they fit; experiment by experiment (the run command) where a chapter does not. "
            "The kinds of experiment the run command cannot build yet are trained by their chapter.")
    return text


def chapter_line(chapter: str, device: str) -> str:
    """One line for a full-mode chapter to print before it trains: its projected training time on ``device`` (a
    name as :func:`aae_tutorial.train.describe_device` gives it)."""
    if chapter not in FULL:
        return ""
    plan = project(_short(device))
    c = plan["chapters"][chapter]
    return (f"Projected training time in full mode: about {c['projected_s'] / 60:.0f} min for {c['model_epochs']:,} "
            f"model-epochs in {c['ensembles']} ensembles. This is a projection: {plan['source']}.")


def _short(device: str) -> str:
    """``cuda (NVIDIA H200)`` -> ``H200``; other names unchanged."""
    match = re.search(r"\b([A-Z]\d{2,4}\w*|T4)\b", device)
    return match.group(1) if match else device
