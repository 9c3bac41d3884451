"""Training recipes: the optimiser, learning rates, schedule, initialisation and losses a model trains with, as one
value.

A recipe is passed to a model (``AAE(prior, hidden, recipe=recipes.PAPER)``); the model classes are the same for every
recipe. Two recipes are named:

* :data:`PAPER`, the paper's recipe. Section 2: "Both, the adversarial network and the autoencoder are trained
  jointly with SGD in two phases"; the rates, momenta, schedule and initialisation are the paper's appendix values as
  a public reproduction transcribes them (:data:`PAPER_SOURCES` names the source of each value, and says where the
  paper is silent).
* :data:`COURSE`, what the course trains with, and why each value differs: see :data:`DEPARTURES`.

Every results record carries ``recipe.describe()`` (:func:`aae_tutorial.results.record`).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from . import tables
from .steps import gan_loss


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has one for the parameters' device, else the foreach one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


OPTIMISERS = ("sgd", "adam")
GENERATOR_LOSSES = ("minimax", "non-saturating")
RECONSTRUCTIONS = ("mse", "mse-mean", "bce")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model trains; the same model classes take any recipe.

    ``lr`` is the reconstruction phase's learning rate, ``adv_lr`` the regularisation phase's (discriminator and
    generator), ``clf_lr`` the semi-supervised classification phase's. ``momentum`` is the reconstruction and
    classification phases' momentum (SGD) or first beta (Adam), ``adv_momentum`` the adversarial phases'.
    ``lr_drops``: the epochs at which every rate is divided by 10 (:meth:`schedules`). ``init_std``: draw every
    linear layer's weights from N(0, init_std²) with zero biases (:meth:`initialise`); ``None`` keeps torch's
    default initialisation.
    """

    name: str
    optimiser: str
    lr: float
    adv_lr: float
    clf_lr: float
    momentum: float
    adv_momentum: float
    generator_loss: str
    reconstruction: str
    lr_drops: tuple[int, ...] = ()
    init_std: float | None = None

    def __post_init__(self) -> None:
        for field, allowed in (("optimiser", OPTIMISERS), ("generator_loss", GENERATOR_LOSSES),
                               ("reconstruction", RECONSTRUCTIONS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"Recipe.{field} must be one of {allowed}, got {getattr(self, field)!r}")
        for field in ("lr", "adv_lr", "clf_lr"):
            value = getattr(self, field)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"Recipe.{field} must be a positive finite number, got {value!r}")
        for field in ("momentum", "adv_momentum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"Recipe.{field} must be a number in [0, 1), got {value!r}")
        if not isinstance(self.lr_drops, tuple) or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in self.lr_drops) \
                or list(self.lr_drops) != sorted(set(self.lr_drops)):
            raise ValueError(f"Recipe.lr_drops must be a tuple of increasing epochs >= 1, got {self.lr_drops!r}")
        if self.init_std is not None and not (isinstance(self.init_std, (int, float)) and 0 < self.init_std < 1):
            raise ValueError(f"Recipe.init_std must be None or a number in (0, 1), got {self.init_std!r}")

    def optimiser_for(self, params: Iterable[torch.nn.Parameter], phase: str) -> torch.optim.Optimizer:
        """The optimiser of one phase: ``"reconstruction"``, ``"adversarial"`` or ``"classification"``."""
        lr = {"reconstruction": self.lr, "adversarial": self.adv_lr, "classification": self.clf_lr}.get(phase)
        if lr is None:
            raise ValueError(f"phase must be 'reconstruction', 'adversarial' or 'classification', got {phase!r}")
        params = list(params)
        momentum = self.adv_momentum if phase == "adversarial" else self.momentum
        if self.optimiser == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
        return adam(params, lr, betas=(momentum, 0.999))

    def initialise(self, model: nn.Module) -> None:
        """Draw every linear layer's weights from N(0, init_std²) and zero its bias; nothing if ``init_std`` is None."""
        if self.init_std is None:
            return
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=self.init_std)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def schedules(self, optimisers: Sequence[torch.optim.Optimizer]) -> list[torch.optim.lr_scheduler.MultiStepLR]:
        """One scheduler per optimiser that divides its rate by 10 at each epoch of ``lr_drops``; step them once at
        the end of every epoch."""
        return [torch.optim.lr_scheduler.MultiStepLR(opt, list(self.lr_drops), gamma=0.1) for opt in optimisers]

    def describe(self) -> dict:
        """The recipe's settings, for results records (plain JSON)."""
        return {**dataclasses.asdict(self), "lr_drops": list(self.lr_drops)}

    def generator(self, logits: Tensor) -> Tensor:
        """The generator's loss on the discriminator's logits for the encoder's codes.

        ``minimax`` minimises E log(1 - D(q(x))), the paper's equation (1); ``non-saturating`` minimises
        -E log D(q(x)), which has the same fixed point and stronger gradients while D wins (Goodfellow et al. 2014).
        """
        if self.generator_loss == "minimax":
            return -gan_loss(logits, False)  # log(1 - D): minus D's loss on fakes
        return gan_loss(logits, True)


def end_epoch(schedules: Sequence[torch.optim.lr_scheduler.LRScheduler]) -> None:
    """Step every schedule once, at the end of an epoch. A phase that never ran (the classification phase of a model
    trained without labels) has an optimiser that never stepped, and torch's warning about that is not a fault."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*before.*optimizer.step")
        for schedule in schedules:
            schedule.step()


#: The paper's recipe (section 2 and appendix); see :data:`PAPER_SOURCES` for where each value comes from.
PAPER = Recipe(name="paper", optimiser="sgd", lr=0.01, adv_lr=0.1, clf_lr=0.1, momentum=0.9, adv_momentum=0.1,
               generator_loss="non-saturating", reconstruction="mse-mean", lr_drops=(50, 1000), init_std=0.01)

#: The course's recipe; every difference from :data:`PAPER` is listed in :data:`DEPARTURES`.
COURSE = Recipe(name="course", optimiser="adam", lr=1e-3, adv_lr=2e-4, clf_lr=1e-3, momentum=0.9, adv_momentum=0.5,
                generator_loss="non-saturating", reconstruction="bce", lr_drops=(50,))

#: The course's recipe with the adversarial phase at Adam's default rate, 1e-3: a firmer pull of the codes towards
#: the prior. Chapter 3 uses it for its thin priors (the mixture and the swiss roll) and measures it on the wide
#: Gaussian, where it swings; chapters 5, 7 and 8 train with it (chapter 5 measures both rates).
COURSE_FIRM = dataclasses.replace(COURSE, name="course-firm", adv_lr=1e-3)

#: The course's recipe with the adversarial phase at 2e-3, chapter 4's label-conditioned AAEs: the best of 2e-4, 5e-4,
#: 1e-3, 2e-3 and 4e-3 on the validation images (``python -m aae_tutorial.run label_prior_mixture-10k-labels --sweep
#: adv_lr ...``; the record is ``book/results/quick/label_prior_mixture-10k-labels_adv_lr_sweep.json``).
COURSE_LABELS = dataclasses.replace(COURSE, name="course-labels", adv_lr=2e-3)

#: The course's recipe with the adversarial phase at 5e-4, chapter 6's classifiers with 100 and with all labels. At
#: 100 labels it was the best rate on the validation images at paper width with a 10-D style over 20 epochs (4.47 %
#: against 7.65 % at 2e-4 and 6.50 % at 1e-3); with all labels only 5e-4 was tried (1.52 %). With 1000 labels the
#: same screen chose 2e-4 (2.94 % against 2.97 %), so that one keeps :data:`COURSE`. The records:
#: ``book/results/full/semisupervised_*_labels_z_dim_10_adv_lr_sweep.json``.
COURSE_SEMI = dataclasses.replace(COURSE, name="course-semi", adv_lr=5e-4)

#: Every named recipe, by the name its records carry.
NAMED = {r.name: r for r in (PAPER, COURSE, COURSE_FIRM, COURSE_LABELS, COURSE_SEMI)}

#: Where the paper's recipe comes from. The paper's appendix is read here through a public reproduction that
#: transcribes it (a secondary source): github.com/1henrypage/adversarial-autoencoders, its "Paper Configuration" cells
#: and ``src/aae.py``.
REPRODUCTION = "github.com/1henrypage/adversarial-autoencoders (a public reproduction transcribing the appendix)"

#: Where each value of :data:`PAPER` comes from.
PAPER_SOURCES = {
    "optimiser": "paper §2: 'trained jointly with SGD in two phases'",
    "lr, adv_lr, clf_lr": f"0.01 reconstruction, 0.1 adversarial, 0.1 classification: the appendix, via {REPRODUCTION}",
    "momentum, adv_momentum": f"0.9 reconstruction and classification, 0.1 adversarial: the appendix, via {REPRODUCTION}",
    "lr_drops": f"every rate divided by 10 at epoch 50 and again at epoch 1000: the appendix, via {REPRODUCTION}",
    "init_std": f"weights drawn from N(0, 0.01²), zero biases: via {REPRODUCTION}",
    "reconstruction": f"a Euclidean cost: the appendix; averaged over the pixels (torch's MSELoss), as {REPRODUCTION} "
                      "computes it",
    "generator_loss": "not stated by the paper (its eq. (1), §1.1, writes the minimax game); the encoder is trained "
                      f"towards D's 'real' label, the non-saturating -log D, as in {REPRODUCTION}",
}

#: What the course changes, and why; the chapters measure the effect beside the paper's recipe.
DEPARTURES = [
    ("optimiser", "SGD, momentum 0.9 (reconstruction, classification) and 0.1 (adversarial)",
     "Adam, β1 0.9 (reconstruction, classification) and 0.5 (adversarial)",
     "the usual optimiser for GANs today, and fast in the few epochs a quick run has"),
    ("learning rates (reconstruction / adversarial / classification)", "0.01 / 0.1 / 0.1, divided by 10 at epochs 50 "
     "and 1000", "1e-3 / 2e-4 / 1e-3, divided by 10 at epoch 50 (as the paper's first drop)",
     "Adam's defaults, and the usual GAN setting for the adversarial phase (2e-4, β1 = 0.5, as in DCGAN); thin priors "
     "and the label-using chapters need a firmer pull: 1e-3 (COURSE_FIRM) in chapters 3 (mixture, swiss roll), 5, 7 "
     "and 8, and 2e-3 (COURSE_LABELS, chosen on validation) in chapter 4"),
    ("initialisation", "weights N(0, 0.01²), zero biases", "torch's default (scaled uniform)",
     "the default keeps each layer's output scale, which Adam's few epochs rely on"),
    ("reconstruction", "Euclidean, averaged over the 784 pixels", "binary cross-entropy, summed over the 784 pixels",
     "chapter 1 compares the two costs"),
]


def departures_table() -> str:
    """The departures of :data:`COURSE` from :data:`PAPER` as a Markdown table, with where the paper's values come
    from in a note."""
    sources = "; ".join(f"{k}: {v}" for k, v in PAPER_SOURCES.items())
    return tables.markdown(["setting", "the paper's recipe", "the course's recipe", "why"], DEPARTURES,
                           "Where the course's recipe departs from the paper's", f"Sources of the paper's recipe: {sources}.")
