"""How each kind of experiment is built, validated and scored: the model, its training step, a validation metric
logged after every epoch (which picks the epoch), and the test score, computed once on the picked weights.

The data follow the paper's protocol: the first 50,000 training images train, the last 10,000 validate, and the
10,000 test images are read only by :attr:`Trainee.score`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import categorical, metrics, priors
from .aae import AAE
from .categorical import CategoricalAAE
from .conditional import LabelConditionedAAE, SupervisedAAE
from .data import MNIST, LabelledSet, balanced_subset
from .experiments import Experiment, RunMode, get
from .history import Run
from .judge import DigitClassifier
from .train import fit
from .vae import VAE

Step = Callable[[Tensor], dict[str, Tensor]]


@dataclass
class Splits:
    """Train (50,000), validation (10,000) and test (10,000) images and labels, on one device."""

    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    x_test: Tensor
    y_test: Tensor

    @classmethod
    def of(cls, mnist: MNIST) -> Splits:
        (x_tr, y_tr), (x_va, y_va) = mnist.split()
        return cls(x_tr, y_tr, x_va, y_va, mnist.x_test, mnist.y_test)

    def training_images(self, trains_on: str) -> Tensor:
        """The images an epoch passes over (:attr:`aae_tutorial.experiments.Experiment.trains_on`)."""
        return self.x_train if trains_on == "train" else torch.cat([self.x_train, self.x_valid])


@dataclass
class Trainee:
    """What a run of one experiment trains and how it is judged.

    ``data``: the tensors ``step`` reads (the first holds the training images); ``validate()``: metrics on the
    validation images, ``"valid"`` the one that picks the epoch; ``score()``: the test value, ``{"value": ...,
    **extra}``, called once.
    """

    model: nn.Module
    step: Step
    data: tuple[Tensor, ...]
    validate: Callable[[], dict[str, float]]
    score: Callable[[], dict]


def build_model(exp: Experiment, hidden: tuple[int, ...], device: torch.device | str) -> nn.Module:
    """The model of ``exp`` at width ``hidden`` on ``device``, as its kind, settings and recipe say: the one builder
    of the run command's runs and of the GPU check's cases. (Chapter 1's autoencoder and chapter 2's 2-D VAE are
    written in their chapters.)"""
    tuple_hidden = tuple(hidden)
    if exp.kind in ("semisupervised", "labels_only", "clustering", "dimred"):  # sections 5-7: one categorical AAE
        built = CategoricalAAE(hidden=tuple_hidden, recipe=exp.recipe, **{"n_classes": 10, **exp.settings})
    elif exp.kind == "parzen":
        built = AAE(gaussian_prior(exp, device), tuple_hidden, exp.recipe)
    elif exp.kind == "prior_match":
        built = (VAE if exp.settings["model"] == "vae" else AAE)(prior_named(exp.settings["prior"], device),
                                                                 tuple_hidden, exp.recipe)
    elif exp.kind == "label_prior":
        built = LabelConditionedAAE(prior_named(exp.settings["prior"], device), tuple_hidden, exp.recipe)
    elif exp.kind == "supervised":
        built = SupervisedAAE(gaussian_prior(exp, device), tuple_hidden, recipe=exp.recipe)
    elif exp.kind == "judge":
        built = DigitClassifier(tuple_hidden)
    else:
        raise NotImplementedError(f"{exp.name} ({exp.kind}): its model is written in book/{exp.chapter}.ipynb")
    return built.to(device)


def _classifier(exp: Experiment, hidden: tuple[int, ...], seed: int, s: Splits) -> Trainee:
    """Section 5: the semi-supervised AAE, or its labels-only baseline; category i is digit i."""
    model = build_model(exp, hidden, s.x_train.device)
    labelled = LabelledSet.balanced(s.x_train, s.y_train, exp.labels_per_class, seed)
    if exp.kind == "labels_only":
        step = categorical.labels_only_step(model, labelled)
    else:
        step = categorical.semisupervised_step(model, s.x_train, labelled)
    return Trainee(model, step, (s.x_train, labelled.x, labelled.y),
                   lambda: {"valid": categorical.classification_error(model, s.x_valid, s.y_valid)},
                   lambda: {"value": categorical.classification_error(model, s.x_test, s.y_test)})


def _clusters(exp: Experiment, hidden: tuple[int, ...], seed: int, s: Splits) -> Trainee:
    """Section 6: unsupervised clustering, scored by the paper's rule. For picking the epoch, the first half of the
    validation images names the clusters and the second half is scored; the test score names them with all 10,000."""
    model = build_model(exp, hidden, s.x_train.device)
    half = len(s.x_valid) // 2
    naming, held = (s.x_valid[:half], s.y_valid[:half]), (s.x_valid[half:], s.y_valid[half:])

    def validate() -> dict[str, float]:
        used = metrics.clusters_used(model.predict(s.x_valid)[0], model.n_classes)
        return {"valid": categorical.clustering_error(model, *held, *naming), "clusters_used": used}

    def score() -> dict:
        return {"value": categorical.clustering_error(model, s.x_test, s.y_test, s.x_valid, s.y_valid),
                "clusters_used": metrics.clusters_used(model.predict(s.x_test)[0], model.n_classes)}

    return Trainee(model, lambda idx: model.train_step(s.x_train[idx]), (s.x_train,), validate, score)


#: Kernel widths tried for the Parzen estimate (chapter 3's grid).
SIGMAS = torch.logspace(-1.2, -0.4, 17).tolist()


def _parzen(exp: Experiment, hidden: tuple[int, ...], seed: int, s: Splits) -> Trainee:
    """Section 3: an AAE with an N(0, z_std² I) prior, judged by the Parzen-window log-likelihood of its samples.
    Per epoch: 5,000 samples, σ chosen on the first half of the validation images, the second half scored. Test:
    10,000 samples, σ chosen on all validation images."""
    device = s.x_train.device
    model = build_model(exp, hidden, device)
    half = len(s.x_valid) // 2

    def validate() -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            samples = model.generate(5000)
        sigma, _ = metrics.select_sigma(samples, s.x_valid[:half], SIGMAS)
        ll = metrics.parzen_log_likelihood(samples, s.x_valid[half:], sigma).mean().item()
        return {"valid": ll, "sigma": sigma}

    def score() -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            samples = model.generate(10_000)
        sigma, _ = metrics.select_sigma(samples, s.x_valid, SIGMAS)
        ll = metrics.parzen_log_likelihood(samples, s.x_test, sigma)
        return {"value": ll.mean().item(), "sigma": sigma, "stderr": round((ll.std() / len(ll) ** 0.5).item(), 2),
                "n_samples": len(samples)}

    return Trainee(model, lambda idx: model.train_step(s.x_train[idx]), (s.x_train,), validate, score)


def gaussian_prior(exp: Experiment, device: torch.device | str) -> priors.Gaussian:
    """The N(0, z_std² I) prior of an experiment whose settings give ``z_dim`` and ``z_std``."""
    return priors.Gaussian(exp.settings["z_dim"], exp.settings["z_std"], device=device)


def prior_named(name: str, device: torch.device | str) -> priors.Prior:
    """Chapter 3's 2-D priors, by name."""
    made = {"gaussian": lambda: priors.Gaussian(dim=2, std=5.0, device=device),
            "uniform": lambda: priors.Uniform(dim=2, half_width=5.0, device=device),
            "mixture": lambda: priors.GaussianMixture(n_components=10, radius=4.0, device=device),
            "swiss-roll": lambda: priors.SwissRoll(n_components=10, device=device)}
    if name not in made:
        raise ValueError(f"prior must be one of {sorted(made)}, got {name!r}")
    return made[name]()


def _prior_match(exp: Experiment, hidden: tuple[int, ...], seed: int, s: Splits) -> Trainee:
    """Section 2: a 2-D AAE (or VAE) and the MMD² between its codes and prior samples (the VAE's codes are draws of
    q(z|x)), as chapter 3 trains it (on all 60,000 training images: the MMD measures the codes, not a generalisation);
    2,000 validation images pick the epoch, 2,000 test images are scored."""
    device = s.x_train.device
    x = s.training_images(exp.trains_on)
    model = build_model(exp, hidden, device)
    prior, is_vae = model.prior, exp.settings["model"] == "vae"

    def mmd(x: Tensor) -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            codes = model.encode(x[:2000], sample=True) if is_vae else model.encode(x[:2000])
            return metrics.mmd(codes, prior.sample(2000))

    return Trainee(model, lambda idx: model.train_step(x[idx]), (x,), lambda: {"valid": mmd(s.x_valid)},
                   lambda: {"value": mmd(s.x_test)})


def _label_prior(exp: Experiment, hidden: tuple[int, ...], seed: int, s: Splits) -> Trainee:
    """Section 2.3: a label-conditioned AAE on a mixture prior. The images outside the labelled subset carry the
    extra "no label" class; the score is the share (%) of codes whose most likely component is their own digit's."""
    device = s.x_train.device
    model = build_model(exp, hidden, device)
    prior = model.prior
    if not hasattr(prior, "assign"):
        raise NotImplementedError(f"{exp.name}: only the mixture has components to score codes against; the swiss "
                                  "roll is shown by its chapter's figures")
    y = s.y_train.clone()
    if exp.labels_per_class is not None:
        keep = balanced_subset(s.y_train, exp.labels_per_class, seed).to(device)
        y = torch.full_like(s.y_train, model.n_classes)
        y[keep] = s.y_train[keep]

    def in_place(x: Tensor, labels: Tensor) -> float:
        return 100 - metrics.error_rate(prior.assign(model.encode(x)), labels)

    return Trainee(model, lambda idx: model.train_step(s.x_train[idx], labels=y[idx]), (s.x_train, y),
                   lambda: {"valid": in_place(s.x_valid, s.y_valid)}, lambda: {"value": in_place(s.x_test, s.y_test)})


#: The kinds the run command builds; the others are trained by their chapter's notebook.
KINDS: dict[str, Callable[[Experiment, tuple[int, ...], int, Splits], Trainee]] = {
    "semisupervised": _classifier, "labels_only": _classifier, "clustering": _clusters, "parzen": _parzen,
    "prior_match": _prior_match, "label_prior": _label_prior,
}


def build(exp: Experiment, hidden: tuple[int, ...], seed: int, splits: Splits) -> Trainee:
    """The model, step and judges of one run of ``exp`` at width ``hidden``; the caller seeds the RNG first."""
    if exp.kind not in KINDS:
        raise NotImplementedError(f"{exp.name} ({exp.kind}) is trained by its chapter, book/{exp.chapter}.ipynb; "
                                  f"the run command builds the kinds {', '.join(KINDS)}")
    return KINDS[exp.kind](exp, tuple(hidden), seed, splits)


def digit_judge(mnist: MNIST, mode: RunMode, device: torch.device | str) -> tuple[DigitClassifier, Run, float]:
    """Train (or load) the digit judge of chapter 5 (:mod:`aae_tutorial.judge`) on the first 50,000 training images,
    at the catalogue's width and epochs; return it, its run and its test error (%)."""
    (x_tr, y_tr), _ = mnist.split()
    hidden, epochs, _ = get("digit_judge").scale(mode.name)
    torch.manual_seed(0)
    judge = build_model(get("digit_judge"), hidden, device)
    run = fit("digit-judge", judge, lambda idx: judge.train_step(x_tr[idx], y_tr[idx]), (x_tr, y_tr), epochs, mode,
              device)
    return judge, run, metrics.error_rate(judge.predict(mnist.x_test), mnist.y_test)
