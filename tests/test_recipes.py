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


def test_the_paper_recipe_is_sgd_with_the_minimax_game_and_a_euclidean_cost():
    assert recipes.PAPER.optimiser == "sgd" and recipes.PAPER.generator_loss == "minimax"
    assert recipes.PAPER.reconstruction == "mse" and recipes.PAPER.momentum == 0.9
    assert {"optimiser", "generator_loss", "reconstruction", "momentum", "lr, adv_lr, clf_lr"} == set(
        recipes.PAPER_SOURCES)
    assert "SGD" in recipes.PAPER_SOURCES["optimiser"]
    changed = {f.name for f in dataclasses.fields(recipes.Recipe)
               if getattr(recipes.PAPER, f.name) != getattr(recipes.COURSE, f.name)} - {"name", "momentum"}
    named = " ".join(setting for setting, *_ in recipes.DEPARTURES)
    assert all(field.split("_")[0] in named.replace("learning rates", "lr adv clf") for field in changed)


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
        assert aae.opt_g.defaults["momentum"] == 0.9
    else:
        assert aae.opt_g.defaults["betas"] == (recipe.momentum, 0.999) and aae.opt_ae.defaults["betas"] == (0.9, 0.999)


def test_generator_losses():
    logits = torch.tensor([-3.0, 0.0, 2.0])
    minimax = recipes.PAPER.generator(logits)  # E log(1 - D)
    assert minimax.item() == pytest.approx(torch.log1p(-torch.sigmoid(logits)).mean().item(), rel=1e-6)
    non_saturating = recipes.COURSE.generator(logits)  # -E log D
    assert non_saturating.item() == pytest.approx(-F.logsigmoid(logits).mean().item(), rel=1e-6)


def test_a_step_trains_with_the_recipes_losses():
    torch.manual_seed(0)
    x = torch.rand(8, 784)
    for recipe in (recipes.PAPER, recipes.COURSE):
        losses = AAE(priors.Gaussian(2, 1.0), HIDDEN, recipe).train_step(x)
        assert (losses["generator"] < 0) == (recipe.generator_loss == "minimax")  # log(1 - D) < 0 <= -log D
        assert (losses["reconstruction"] < 100) == (recipe.reconstruction == "mse")  # summed squares vs BCE


@pytest.mark.parametrize("change, message", [
    ({"optimiser": "rmsprop"}, "optimiser must be one of"),
    ({"generator_loss": "wasserstein"}, "generator_loss must be one of"),
    ({"lr": 0.0}, "lr must be a positive finite number"),
    ({"adv_lr": float("inf")}, "adv_lr must be a positive finite number"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
])
def test_bad_recipes_are_refused_with_the_field_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(recipes.COURSE, **change)
    with pytest.raises(ValueError, match="phase must be"):
        recipes.COURSE.optimiser_for([torch.nn.Parameter(torch.zeros(1))], "generator")


def test_departures_table_names_the_sources():
    text = recipes.departures_table()
    assert text.count("\n| ") == len(recipes.DEPARTURES) + 1
    assert "BlueWinters/MLFrame" in text and "trained jointly with SGD" in text
