"""The catalogue: every experiment the book reports, as one value each.

An :class:`Experiment` holds what a run of it needs: the kind of model and step (:mod:`aae_tutorial.kinds`), its
settings, its recipe, its labelled subset, and its width, epochs and seeds at each :class:`Scale`: ``quick`` (minutes
on a 2-core CPU; what the book's pages execute) and ``full`` (the paper's width). A chapter runs at the scale
``AAE_MODE`` names (:func:`run_mode`); unset, it is ``quick`` on every device: paper scale is opt-in. Read it at a glance with
``python -m aae_tutorial.run --list``; train any of it with ``python -m aae_tutorial.run NAME --scale full``.

A setting is stated here once. The paper's values come from its tables (section numbers beside them); where the
paper is silent, :mod:`aae_tutorial.recipes` and the chapters say so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TypeVar

from . import nets
from .recipes import COURSE, COURSE_FIRM, COURSE_LABELS, COURSE_SEMI, PAPER, Recipe

T = TypeVar("T")
#: The two scales: every chapter runs at either, and so does every experiment.
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



#: The quick scale's hidden layers: every network in the book at a quarter of the paper's width.
QUICK_HIDDEN = (256, 256)


@dataclass(frozen=True)
class Scale:
    """Width, length and seeds of one scale of an experiment."""

    hidden: tuple[int, ...]
    epochs: int
    seeds: tuple[int, ...] = (0,)

    @property
    def model_epochs(self) -> int:
        return self.epochs * len(self.seeds)

    def __iter__(self):
        """``hidden, epochs, seeds = experiment.scale(mode.name)``."""
        return iter((self.hidden, self.epochs, list(self.seeds)))


def quick(epochs: int, seeds: tuple[int, ...] = (0,)) -> Scale:
    return Scale(QUICK_HIDDEN, epochs, seeds)


def full(epochs: int, seeds: tuple[int, ...] = (0,)) -> Scale:
    return Scale(nets.PAPER_HIDDEN, epochs, seeds)


#: The seeds where a chapter reports a mean ± std: full mode's, and quick mode's where a chapter's claim rests on the
#: spread between seeds (chapter 3's prior match, chapter 6's 1000 labels against labels only).
SEEDS3 = (0, 1, 2)
#: Chapter 6's headline runs in full mode: 200 epochs (rates ÷ 10 at epoch 50), three seeds.
SEEDS3_200 = full(200, SEEDS3)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the book.

    ``kind`` names how it is built and scored (:data:`aae_tutorial.kinds.KINDS`); ``settings`` are the model's
    keyword settings for that kind; ``labels_per_class`` is the labelled subset of the semi-supervised kinds (``None``:
    every training label); ``trains_on`` the images an epoch passes over: ``"train"``, the first 50,000 training images
    (the last 10,000 validate), or ``"train+valid"``, all 60,000 (where nothing is picked on validation). ``metric`` is what its record reports, ``higher_is_better`` how validation picks the epoch.
    """

    name: str
    chapter: str
    title: str
    kind: str
    recipe: Recipe
    quick: Scale
    full: Scale
    metric: str = ""
    settings: dict = field(default_factory=dict)
    labels_per_class: int | None = None
    trains_on: str = "train"
    higher_is_better: bool = False
    paper: float | None = None
    paper_std: float | None = None

    def __post_init__(self) -> None:
        if self.trains_on not in ("train", "train+valid"):
            raise ValueError(f"{self.name}: trains_on must be 'train' or 'train+valid', got {self.trains_on!r}")

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches of 100 in one epoch."""
        return 500 if self.trains_on == "train" else 600

    def scale(self, name: str) -> Scale:
        if name not in MODES:
            raise ValueError(f"scale must be one of {MODES}, got {name!r}")
        return getattr(self, name)

    def training(self) -> dict:
        """What decides the trained weights besides width, seed and epochs: the key of its checkpoints."""
        return {"kind": self.kind, "recipe": self.recipe.describe(), "settings": self.settings,
                "labels_per_class": self.labels_per_class, "trains_on": self.trains_on}


def _semisupervised(labels: str, per_class: int | None, paper: tuple[float, float] | None, *, suffix: str = "",
                    kind: str = "semisupervised", recipe: Recipe = COURSE, full_scale: Scale = SEEDS3_200,
                    settings: dict | None = None, what: str = "", quick_seeds: tuple[int, ...] = (0,)) -> Experiment:
    return Experiment(
        f"semisupervised_{labels}_labels{suffix}", "06_semisupervised", f"semi-supervised AAE, {labels} labels{what}",
        kind, recipe, quick(3, quick_seeds), full_scale, f"test error (%), {labels} labels{what}",
        settings or SEMI, per_class,
        paper=paper[0] if paper else None, paper_std=paper[1] if paper else None)


#: Chapter 6's classifier: a 10-D style code, the paper's as its transcription gives it (``style_dim: 10``, via
#: :data:`aae_tutorial.recipes.REPRODUCTION`), and batch norm.
SEMI = {"z_dim": 10, "batch_norm": True}
#: Chapter 6's variant with a 4-D style (the course's setting until 2026-12-07, with :data:`COURSE`): too little room
#: for the digit, so the decoder reads it from the label.
STYLE4 = {"z_dim": 4, "batch_norm": True}

#: Chapter 7's settings for clustering (and chapter 8's unsupervised map): departures measured in chapter 7.
CLUSTERING = {"batch_norm": True, "input_noise": 0.0, "balance": 1.0}
#: The paper's networks, for the paper's recipe: no batch norm, Gaussian input noise (std 0.3).
PAPER_NETS = {"batch_norm": False, "input_noise": 0.3}


def _clustering(k: int, paper: tuple[float, float] | None, full_scale: Scale, *, suffix: str = "",
                recipe: Recipe = COURSE_FIRM, settings: dict = CLUSTERING) -> Experiment:
    return Experiment(
        f"clustering_k{k}{suffix}", "07_clustering", f"unsupervised clustering, {k} categories"
        + (", the paper's recipe" if recipe is PAPER else ""), "clustering", recipe, quick(3), full_scale,
        f"test error (%), {k} clusters, the paper's labelling rule", {"n_classes": k, "z_dim": 5, **settings},
        paper=paper[0] if paper else None, paper_std=paper[1] if paper else None)


def _prior_match(prior: str, model: str, recipe: Recipe, full_scale: Scale, suffix: str = "",
                 quick_seeds: tuple[int, ...] = (0,)) -> Experiment:
    return Experiment(f"prior_match_{prior}_{model}{suffix}", "03_aae", f"2-D {model.upper()}, {prior} prior"
                      + (", the paper's recipe" if recipe is PAPER else ""), "prior_match", recipe,
                      quick(5, quick_seeds), full_scale, "MMD² to prior (lower is better)",
                      {"prior": prior, "model": model}, trains_on="train+valid")


#: Every experiment of the book, by name (the name of its results record, or of its run where it has none).
CATALOGUE: dict[str, Experiment] = {e.name: e for e in [
    # chapter 1: a 2-D autoencoder, with each reconstruction cost
    *[Experiment(f"autoencoder_{loss}", "01_autoencoders", f"2-D autoencoder, {loss.upper()}", "autoencoder",
                 COURSE, quick(4), full(50), settings={"loss": loss}, trains_on="train+valid") for loss in ("bce", "mse")],
    # chapter 2: a 2-D VAE
    Experiment("vae_2d", "02_vae", "2-D VAE, N(0, I) prior", "vae", COURSE, quick(4), full(50),
               settings={"prior": "standard"}, trains_on="train+valid"),
    # chapter 3: how well the codes match the prior (MMD² on 2-D codes; no paper value) and the Parzen estimate
    _prior_match("gaussian", "aae", COURSE, full(40, SEEDS3), quick_seeds=SEEDS3),
    _prior_match("mixture", "aae", COURSE_FIRM, full(40, SEEDS3), quick_seeds=SEEDS3),
    _prior_match("uniform", "aae", COURSE, full(40)),
    _prior_match("swiss-roll", "aae", COURSE_FIRM, full(40)),
    _prior_match("gaussian", "aae", COURSE_FIRM, full(40), suffix="_adv_lr_1e-3"),
    _prior_match("gaussian", "aae", PAPER, full(40), suffix="_paper_recipe"),
    _prior_match("gaussian", "vae", COURSE, full(40, SEEDS3), quick_seeds=SEEDS3),
    _prior_match("mixture", "vae", COURSE, full(40, SEEDS3), quick_seeds=SEEDS3),
    Experiment("parzen_loglik", "03_aae", "8-D Gaussian AAE, Parzen log-likelihood", "parzen", COURSE, quick(6),
               full(200), "Parzen log-likelihood (nats)", {"z_dim": 8, "z_std": 5.0}, higher_is_better=True,
               paper=340, paper_std=2),
    # chapter 4: a label-conditioned prior
    *[Experiment(f"label_prior_{prior}-{labels}-labels", "04_labels", f"label-conditioned AAE, {prior}, {labels} labels",
                 "label_prior", COURSE_LABELS, quick(5), full(50), "test codes in their own component (%)",
                 {"prior": prior}, per_class, higher_is_better=True)
      for prior, labels, per_class in [("mixture", "all", None), ("mixture", "10k", 1000),
                                       ("swiss-roll", "10k", 1000)]],
    # chapter 5: style and content, judged by an independent digit classifier
    Experiment("digit_judge", "05_supervised", "the digit judge (an MLP classifier of real images)", "judge", COURSE,
               Scale((512,), 3), Scale((512,), 20), "test error (%)"),
    Experiment("content_follows_label_05_supervised", "05_supervised", "supervised AAE, 15-D style", "supervised",
               COURSE_FIRM, quick(5), full(50), "decoded images the judge reads as their label (%)",
               {"z_dim": 15, "z_std": 1.0}, trains_on="train+valid", higher_is_better=True),
    Experiment("supervised_adv_lr_2e-4", "05_supervised", "supervised AAE, 15-D style, adversarial rate 2e-4",
               "supervised", COURSE, quick(5), full(50), settings={"z_dim": 15, "z_std": 1.0}, trains_on="train+valid"),
    # chapter 6: semi-supervised classification (paper table 2)
    _semisupervised("100", 10, (1.90, 0.10), recipe=COURSE_SEMI),
    _semisupervised("1000", 100, (1.60, 0.08), quick_seeds=SEEDS3),
    _semisupervised("all", None, (0.85, 0.02), recipe=COURSE_SEMI),
    _semisupervised("100", 10, None, suffix="_labels_only", kind="labels_only", full_scale=full(50, SEEDS3),
                    what=", labelled images only"),
    _semisupervised("1000", 100, None, suffix="_labels_only", kind="labels_only", full_scale=full(50, SEEDS3),
                    what=", labelled images only", quick_seeds=SEEDS3),
    _semisupervised("100", 10, None, suffix="_paper_recipe", recipe=PAPER, full_scale=full(30, SEEDS3),
                    settings={**SEMI, **PAPER_NETS}, what=", the paper's recipe"),
    _semisupervised("1000", 100, None, suffix="_paper_recipe", recipe=PAPER, full_scale=full(30),
                    settings={**SEMI, **PAPER_NETS}, what=", the paper's recipe"),
    *[_semisupervised(labels, per_class, None, suffix="_style4", full_scale=full(epochs), settings=STYLE4,
                      what=", 4-D style") for labels, per_class, epochs in (("100", 10, 80), ("1000", 100, 60),
                                                                            ("all", None, 20))],
    # chapter 7: unsupervised clustering (paper table 3)
    _clustering(16, (9.55, 2.05), full(150, SEEDS3)),
    _clustering(30, (4.10, 1.13), full(150, SEEDS3)),
    _clustering(10, None, full(20, SEEDS3), suffix="_hungarian"),
    _clustering(16, None, full(20, SEEDS3), suffix="_paper_recipe", recipe=PAPER, settings=PAPER_NETS),
    # chapter 8: 2-D maps with cluster heads
    *[Experiment(f"dimred_2d_{slug}", "08_dimensionality_reduction", f"2-D map with cluster heads, {labels}",
                 "dimred", recipe, quick(3), full(100, SEEDS3), f"test error (%), 2-D, {labels}",
                 {**settings, "z_dim": 2, "head_dim": 2, "head_gap": 6.0}, per_class, paper=paper)
      for slug, labels, per_class, recipe, settings, paper in [
          # the paper's 13.5 % is read off its figure 11, which gives no ±
          ("unsupervised", "unsupervised, 20 clusters", None, COURSE_FIRM, {"n_classes": 20, **CLUSTERING}, 13.5),
          ("100_labels", "100 labels", 10, COURSE, {"n_classes": 10}, None),
          ("1000_labels", "1000 labels", 100, COURSE, {"n_classes": 10}, None)]],
]}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a KeyError lists the names there are."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"no experiment {name!r}; the catalogue has: {', '.join(CATALOGUE)}") from None
