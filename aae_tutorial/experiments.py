"""The catalogue: every experiment the book reports, as one value each.

An :class:`Experiment` holds what a run of it needs: the kind of model and step (:mod:`aae_tutorial.kinds`), its
settings, its recipe, its labelled subset, and its width, epochs and seeds at each :class:`Scale`: ``quick`` (minutes
on a 2-core CPU; what the book's pages execute) and ``full`` (the paper's width). Read it at a glance with
``python -m aae_tutorial.run --list``; train any of it with ``python -m aae_tutorial.run NAME --scale full``.

A setting is stated here once. The paper's values come from its tables (section numbers beside them); where the
paper is silent the experiment says so in ``note``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import nets
from .recipes import COURSE, COURSE_FIRM, COURSE_LABELS, PAPER, Recipe

#: The quick scale's hidden layers: every network in the book at a quarter of the paper's width.
QUICK_HIDDEN = (256, 256)
SCALES = ("quick", "full")


@dataclass(frozen=True)
class Scale:
    """Width, length and seeds of one scale of an experiment."""

    hidden: tuple[int, ...]
    epochs: int
    seeds: tuple[int, ...] = (0,)

    @property
    def model_epochs(self) -> int:
        return self.epochs * len(self.seeds)


def quick(epochs: int) -> Scale:
    return Scale(QUICK_HIDDEN, epochs)


def full(epochs: int, seeds: tuple[int, ...] = (0,)) -> Scale:
    return Scale(nets.PAPER_HIDDEN, epochs, seeds)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the book.

    ``kind`` names how it is built and scored (:data:`aae_tutorial.kinds.KINDS`); ``settings`` are the model's
    keyword settings for that kind; ``labels_per_class`` is the labelled subset of the semi-supervised kinds (``None``:
    every training label). ``metric`` is what its record reports, ``higher_is_better`` how validation picks the epoch.
    """

    name: str
    chapter: str
    title: str
    kind: str
    recipe: Recipe
    quick: Scale
    full: Scale
    metric: str
    settings: dict = field(default_factory=dict)
    labels_per_class: int | None = None
    higher_is_better: bool = False
    paper: float | None = None
    paper_std: float | None = None
    note: str = ""

    def scale(self, name: str) -> Scale:
        if name not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {name!r}")
        return getattr(self, name)

    def describe(self) -> dict:
        """The experiment's settings, for records and checkpoint keys."""
        out = dataclasses.asdict(self)
        out["recipe"] = self.recipe.describe()
        return out


def _semisupervised(labels: str, per_class: int | None, paper: tuple[float, float] | None, *, suffix: str = "",
                    kind: str = "semisupervised", recipe: Recipe = COURSE, full_epochs: int = 100,
                    batch_norm: bool = True, what: str = "") -> Experiment:
    return Experiment(
        f"semisupervised_{labels}_labels{suffix}", "06_semisupervised",
        f"semi-supervised AAE, {labels} labels{what}", kind, recipe, quick(3), full(full_epochs),
        f"test error (%), {labels} labels{what}", {"z_dim": 4, "batch_norm": batch_norm}, per_class,
        paper=paper[0] if paper else None, paper_std=paper[1] if paper else None)


#: Chapter 7's settings for clustering (and chapter 8's unsupervised map): departures measured in chapter 7.
CLUSTERING = {"batch_norm": True, "input_noise": 0.0, "balance": 1.0}


def _clustering(k: int, paper: tuple[float, float] | None, *, suffix: str = "", recipe: Recipe = COURSE_FIRM,
                settings: dict | None = None, full_epochs: int = 50) -> Experiment:
    return Experiment(
        f"clustering_k{k}{suffix}", "07_clustering", f"unsupervised clustering, {k} categories"
        + (", the paper's recipe" if recipe is PAPER else ""), "clustering", recipe, quick(3), full(full_epochs),
        f"test error (%), {k} clusters, the paper's labelling rule",
        {"n_classes": k, "z_dim": 5, **(CLUSTERING if settings is None else settings)},
        paper=paper[0] if paper else None, paper_std=paper[1] if paper else None)


_PAPER_RECIPE_MODEL = {"batch_norm": False}  # the paper's networks: no batch norm

#: Every experiment of the book, by name (the name of its results record).
CATALOGUE: dict[str, Experiment] = {e.name: e for e in [
    # chapter 3: how well the codes match the prior (MMD² on 2-D codes; no paper value) and the Parzen estimate
    *[Experiment(f"prior_match_{prior}_{model}", "03_aae", f"2-D {model.upper()}, {prior} prior", "prior_match",
                 recipe, quick(5), full(40), "MMD² to prior (lower is better)", {"prior": prior, "model": model})
      for prior, model, recipe in [("gaussian", "aae", COURSE), ("mixture", "aae", COURSE_FIRM),
                                   ("uniform", "aae", COURSE), ("swiss-roll", "aae", COURSE_FIRM),
                                   ("gaussian", "vae", COURSE), ("mixture", "vae", COURSE)]],
    Experiment("prior_match_gaussian_aae_paper_recipe", "03_aae", "2-D AAE, Gaussian prior, the paper's recipe",
               "prior_match", PAPER, quick(5), full(40), "MMD² to prior (lower is better)",
               {"prior": "gaussian", "model": "aae"}),
    Experiment("parzen_loglik", "03_aae", "8-D Gaussian AAE, Parzen log-likelihood", "parzen", COURSE, quick(6),
               full(100), "Parzen log-likelihood (nats)", {"z_dim": 8, "z_std": 5.0}, higher_is_better=True,
               paper=340, paper_std=2, note="σ chosen on the validation images, 10,000 samples (paper §3)"),
    # chapter 4: a label-conditioned prior
    *[Experiment(f"label_prior_{prior}-{labels}-labels", "04_labels", f"label-conditioned AAE, {prior}, {labels} labels",
                 "label_prior", COURSE_LABELS, quick(5), full(100), "test codes in their own component (%)",
                 {"prior": prior}, per_class)
      for prior, labels, per_class in [("mixture", "all", None), ("mixture", "10k", 1000),
                                       ("swiss-roll", "10k", 1000)]],
    # chapter 5: style and content
    Experiment("content_follows_label_05_supervised", "05_supervised", "supervised AAE, 15-D style", "supervised",
               COURSE_FIRM, quick(5), full(100), "decoded images the judge reads as their label (%)",
               {"z_dim": 15}, higher_is_better=True),
    # chapter 6: semi-supervised classification (paper table 2)
    _semisupervised("100", 10, (1.90, 0.10)),
    _semisupervised("1000", 100, (1.60, 0.08)),
    _semisupervised("all", None, (0.85, 0.02), full_epochs=30),
    _semisupervised("100", 10, None, suffix="_labels_only", kind="labels_only", full_epochs=50,
                    what=", labelled images only"),
    _semisupervised("1000", 100, None, suffix="_labels_only", kind="labels_only", full_epochs=50,
                    what=", labelled images only"),
    _semisupervised("100", 10, None, suffix="_paper_recipe", recipe=PAPER, batch_norm=False, what=", the paper's recipe"),
    _semisupervised("1000", 100, None, suffix="_paper_recipe", recipe=PAPER, batch_norm=False,
                    what=", the paper's recipe"),
    # chapter 7: unsupervised clustering (paper table 3)
    _clustering(16, (9.55, 2.05)),
    _clustering(30, (4.10, 1.13)),
    _clustering(10, None, suffix="_hungarian"),
    _clustering(16, None, suffix="_paper_recipe", recipe=PAPER, settings={**_PAPER_RECIPE_MODEL, "input_noise": 0.3}),
    # chapter 8: 2-D maps with cluster heads
    *[Experiment(f"dimred_2d_{labels}", "08_dimensionality_reduction", f"2-D map with cluster heads, {labels}",
                 "dimred", recipe, quick(3), full(300), "test error (%)", {**settings, "head_gap": 6.0}, per_class)
      for labels, per_class, recipe, settings in [
          ("unsupervised", None, COURSE_FIRM, {"n_classes": 20, **CLUSTERING}),
          ("100_labels", 10, COURSE, {"n_classes": 10}), ("1000_labels", 100, COURSE, {"n_classes": 10})]],
]}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a KeyError lists the names there are."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"no experiment {name!r}; the catalogue has: {', '.join(CATALOGUE)}") from None
