import dataclasses

import pytest
import torch
from torch.nn import functional as F

from aae_tutorial import priors, recipes
from aae_tutorial.aae import AAE
from aae_tutorial.categorical import CategoricalAAE
from aae_tutorial.conditional import LabelConditionedAAE, SupervisedAAE
from aae_tutorial.vae import VAE

HIDDEN = (16, 16)


def test_the_paper_recipe_carries_the_appendix_values_with_a_source_for_each():
    p = recipes.PAPER
    assert (p.optimiser, p.generator_loss, p.reconstruction) == ("sgd", "non-saturating", "mse-mean")
    assert (p.lr, p.adv_lr, p.clf_lr, p.momentum, p.adv_momentum) == (0.01, 0.1, 0.1, 0.9, 0.1)
    assert p.lr_drops == (50, 1000) and p.init_std == 0.01
    covered = {f for key in recipes.PAPER_SOURCES for f in key.split(", ")}
    assert covered == {f.name for f in dataclasses.fields(recipes.Recipe)} - {"name"}
    assert "1henrypage/adversarial-autoencoders" in recipes.PAPER_SOURCES["lr, adv_lr, clf_lr"]
    assert "not stated by the paper" in recipes.PAPER_SOURCES["generator_loss"]
    changed = {f.name for f in dataclasses.fields(recipes.Recipe)
               if getattr(recipes.PAPER, f.name) != getattr(recipes.COURSE, f.name)} - {"name"}
    named = " ".join(setting for setting, *_ in recipes.DEPARTURES)
    words = {"lr": "learning rates", "adv_lr": "learning rates", "clf_lr": "learning rates", "momentum": "optimiser",
             "adv_momentum": "optimiser", "lr_drops": "learning rates", "init_std": "initialisation",
             "optimiser": "optimiser", "generator_loss": "generator loss", "reconstruction": "reconstruction"}
    assert all(words[field] in named for field in changed)


def test_the_recipe_initialises_and_schedules():
    torch.manual_seed(0)
    model = AAE(priors.Gaussian(2, 1.0), HIDDEN, recipes.PAPER)
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(weights.std().item() - 0.01) < 0.001
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, torch.nn.Linear))
    schedules = recipes.PAPER.schedules([model.opt_ae, model.opt_d])
    for epoch in range(51):
        assert model.opt_ae.param_groups[0]["lr"] == pytest.approx(0.01 if epoch < 50 else 0.001)
        assert model.opt_d.param_groups[0]["lr"] == pytest.approx(0.1 if epoch < 50 else 0.01)
        recipes.end_epoch(schedules)


@pytest.mark.parametrize("recipe, kind", [(recipes.PAPER, torch.optim.SGD), (recipes.COURSE, torch.optim.Adam)])
def test_every_model_builds_its_optimisers_from_the_recipe(recipe, kind):
    models = [AAE(priors.Gaussian(2, 1.0), HIDDEN, recipe), VAE(priors.Gaussian(2, 1.0), HIDDEN, recipe),
              LabelConditionedAAE(priors.GaussianMixture(10), HIDDEN, recipe),
              SupervisedAAE(priors.Gaussian(2, 1.0), HIDDEN, recipe=recipe), CategoricalAAE(10, 2, HIDDEN, recipe=recipe)]
    for model in models:
        opts = [v for v in vars(model).values() if isinstance(v, torch.optim.Optimizer)]
        assert opts and all(isinstance(o, kind) for o in opts), type(model).__name__
        assert model.init_args["recipe"] == recipe  # so the checkpoint key covers it
    aae = models[0]
    assert aae.opt_ae.defaults["lr"] == recipe.lr and aae.opt_d.defaults["lr"] == recipe.adv_lr
    assert models[-1].opt_c.defaults["lr"] == recipe.clf_lr
    if kind is torch.optim.SGD:
        assert aae.opt_g.defaults["momentum"] == recipe.adv_momentum and aae.opt_ae.defaults["momentum"] == 0.9
    else:
        assert aae.opt_g.defaults["betas"] == (recipe.adv_momentum, 0.999)
        assert aae.opt_ae.defaults["betas"] == (recipe.momentum, 0.999)


def test_generator_losses():
    logits = torch.tensor([-3.0, 0.0, 2.0])
    minimax = dataclasses.replace(recipes.PAPER, generator_loss="minimax").generator(logits)  # E log(1 - D)
    assert minimax.item() == pytest.approx(torch.log1p(-torch.sigmoid(logits)).mean().item(), rel=1e-6)
    non_saturating = recipes.COURSE.generator(logits)  # -E log D
    assert non_saturating.item() == pytest.approx(-F.logsigmoid(logits).mean().item(), rel=1e-6)


def test_a_step_trains_with_the_recipes_losses():
    torch.manual_seed(0)
    x = torch.rand(8, 784)
    minimax = dataclasses.replace(recipes.PAPER, generator_loss="minimax", reconstruction="mse")
    for recipe in (recipes.PAPER, recipes.COURSE, minimax):
        losses = AAE(priors.Gaussian(2, 1.0), HIDDEN, recipe).train_step(x)
        assert (losses["generator"] < 0) == (recipe.generator_loss == "minimax")  # log(1 - D) < 0 <= -log D
        # per-pixel mean squares < 1 <= summed squares or BCE of 784 pixels
        assert (losses["reconstruction"] < 1) == (recipe.reconstruction == "mse-mean")


@pytest.mark.parametrize("change, message", [
    ({"optimiser": "rmsprop"}, "optimiser must be one of"),
    ({"generator_loss": "wasserstein"}, "generator_loss must be one of"),
    ({"lr": 0.0}, "lr must be a positive finite number"),
    ({"adv_lr": float("inf")}, "adv_lr must be a positive finite number"),
    ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\)"),
    ({"adv_momentum": "0.9"}, r"adv_momentum must be a number in \[0, 1\)"),
    ({"lr_drops": (50, 10)}, "lr_drops must be a tuple of increasing epochs"),
    ({"init_std": 0.0}, "init_std must be None or a number"),
])
def test_bad_recipes_are_refused_with_the_field_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(recipes.COURSE, **change)
    with pytest.raises(ValueError, match="phase must be"):
        recipes.COURSE.optimiser_for([torch.nn.Parameter(torch.zeros(1))], "generator")


def test_departures_table_names_the_sources():
    text = recipes.departures_table()
    assert text.count("\n| ") == len(recipes.DEPARTURES) + 1
    assert "1henrypage/adversarial-autoencoders" in text and "trained jointly with SGD" in text
