"""Each phase of each model updates the parameters it should, and only those; bad labels are refused."""
import copy

import pytest
import torch

from aae_tutorial import priors, vae
from aae_tutorial.aae import AAE
from aae_tutorial.categorical import CategoricalAAE
from aae_tutorial.conditional import LabelConditionedAAE, SupervisedAAE

HIDDEN = (32, 32)


def changed(before: torch.nn.Module, after: torch.nn.Module) -> set[str]:
    """Top-level submodules whose parameters differ."""
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    return {name.split(".")[0] for name in a if not torch.equal(a[name], b[name])}


def only(model, keep: str):
    """Silence every optimiser but ``keep`` (learning rate 0 moves nothing)."""
    for name, value in vars(model).items():
        if name.startswith("opt") and name != keep:
            for group in value.param_groups:
                group["lr"] = 0.0
    return model


@pytest.mark.parametrize("make, step", [
    (lambda: AAE(priors.Gaussian(2, 5.0), HIDDEN), lambda m, x: m.train_step(x)),
    (lambda: LabelConditionedAAE(priors.GaussianMixture(10), HIDDEN),
     lambda m, x: m.train_step(x, torch.tensor([0, 3, 10, 10] * 4))),
    (lambda: SupervisedAAE(priors.Gaussian(15, 1.0), HIDDEN), lambda m, x: m.train_step(x, torch.arange(16) % 10)),
])
@pytest.mark.parametrize("keep, expected", [("opt_ae", {"encoder", "decoder"}), ("opt_d", {"discriminator"}),
                                            ("opt_g", {"encoder"})])
def test_aae_phases_touch_only_their_parameters(make, step, keep, expected):
    torch.manual_seed(0)
    model = only(make(), keep)
    before = copy.deepcopy(model)
    losses = step(model, torch.rand(16, 784))
    assert set(losses) == {"reconstruction", "discriminator", "generator"}
    assert changed(before, model) == expected


def test_label_conditioned_aae_inputs_and_label_checks():
    model = LabelConditionedAAE(priors.GaussianMixture(10), HIDDEN)
    assert model.discriminator[0].in_features == 2 + 11  # code + 10 digits + "no label"
    assert model.decoder[0].in_features == 2
    x = torch.rand(4, 784)
    with pytest.raises(ValueError, match=r"labels must lie in 0..10"):
        model.train_step(x, torch.tensor([0, 1, 11, 2]))
    with pytest.raises(ValueError, match="labels must lie"):
        model.train_step(x, torch.tensor([-1, 1, 2, 2]))  # -1 is not "component 9"
    with pytest.raises(ValueError, match="integer"):
        model.train_step(x, torch.zeros(4))
    with pytest.raises(ValueError, match="components"):
        LabelConditionedAAE(priors.Gaussian(2), HIDDEN)


def test_prior_refuses_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        priors.GaussianMixture(10).sample(2, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        priors.SwissRoll(10).sample(1, torch.tensor([10]))


def test_supervised_aae_decoder_takes_classes():
    model = SupervisedAAE(priors.Gaussian(15, 1.0), HIDDEN)
    assert model.decoder[0].in_features == 15 + 10 and model.discriminator[0].in_features == 15
    y = torch.tensor([1, 2, 3, 4])
    assert model.decode(torch.zeros(4, 15), y).shape == (4, 784)
    assert model.generate(4, y).shape == (4, 784)
    with pytest.raises(ValueError, match=r"classes must lie in 0..9"):
        model.train_step(torch.rand(4, 784), torch.tensor([1, 2, 3, 10]))


@pytest.mark.parametrize("keep, expected", [
    ("opt_ae", {"trunk", "y_head", "z_head", "decoder"}),
    ("opt_d", {"d_y", "d_z"}),
    ("opt_g", {"trunk", "y_head", "z_head"}),
    ("opt_c", {"trunk", "y_head"}),
])
def test_semi_supervised_phases_touch_only_their_parameters(keep, expected):
    torch.manual_seed(0)
    model = only(CategoricalAAE(10, 4, HIDDEN), keep)
    before = copy.deepcopy(model)
    x = torch.rand(16, 784)
    losses = model.train_step(x, x[:8], torch.arange(8))
    assert "classification" in losses
    assert changed(before, model) == expected


def test_classification_phase_needs_images_and_labels_together():
    model = CategoricalAAE(10, 4, HIDDEN)
    x = torch.rand(8, 784)
    with pytest.raises(ValueError, match="both x_labelled and y_labelled"):
        model.train_step(x, y_labelled=torch.arange(8))
    with pytest.raises(ValueError, match="both x_labelled and y_labelled"):
        model.train_step(x, x_labelled=x)
    with pytest.raises(ValueError, match=r"y_labelled must lie in 0..9"):
        model.train_step(x, x, torch.arange(8) + 5)


def test_clustering_without_labels_has_no_classification_phase():
    torch.manual_seed(0)
    model = only(CategoricalAAE(16, 4, HIDDEN), "opt_c")
    before = copy.deepcopy(model)
    assert "classification" not in model.train_step(torch.rand(16, 784))
    assert changed(before, model) == set()


def test_cluster_heads_module():
    torch.manual_seed(0)
    model = CategoricalAAE(5, 2, HIDDEN, head_dim=2, head_gap=3.0)
    assert model.decoder[0].in_features == 2  # the decoder sees W_C y + z, not [y, z]
    with torch.no_grad():
        model.heads.weight.copy_(torch.tensor([[0.0, 1, 10, 20, 30], [0, 0, 0, 0, 0]]))
    assert model.head_penalty().item() == pytest.approx(2.0)  # only heads 0 and 1 are closer than 3
    y = torch.tensor([2])
    assert torch.allclose(model.representation(torch.nn.functional.one_hot(y, 5).float(), torch.ones(1, 2)),
                          torch.tensor([[11.0, 1.0]]))
    assert model.embed(torch.rand(7, 784)).shape == (7, 2)
    with pytest.raises(ValueError, match="same space"):
        CategoricalAAE(5, 3, HIDDEN, head_dim=2)


def test_vae_step_and_mixture_kl():
    torch.manual_seed(0)
    for prior in (priors.Gaussian(2, 1.0), priors.GaussianMixture(10)):
        model = vae.VAE(prior, HIDDEN)
        losses = model.train_step(torch.rand(8, 784))
        assert torch.isfinite(losses["kl"]) and model.encode(torch.rand(3, 784)).shape == (3, 2)
    with pytest.raises(ValueError, match="density"):
        vae.VAE(priors.SwissRoll(), HIDDEN)


def test_constructor_arguments_are_recorded():
    model = CategoricalAAE(16, 5, HIDDEN, input_noise=0.0)
    assert model.init_args["n_classes"] == 16 and model.init_args["input_noise"] == 0.0
    assert model.init_args["z_std"] == 1.0  # defaults too
    sup = SupervisedAAE(priors.Gaussian(15, 1.0), HIDDEN, n_classes=10)
    assert set(sup.init_args) == {"prior", "hidden", "n_classes", "recipe"}  # the outermost constructor's arguments


def test_batch_norm_trunk_trains_on_batch_statistics_and_predicts_with_running_ones():
    torch.manual_seed(0)
    model = CategoricalAAE(10, 4, (16, 16), batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.trunk) == 2
    assert all(m.bias is None for m in model.trunk if isinstance(m, torch.nn.Linear))  # the norm's shift replaces it
    x = torch.rand(64, 784)
    model.train_step(x)
    model.eval()
    (first, _), (alone, _) = model.predict(x), model.predict(x[:1])  # eval: no dependence on the rest of the batch
    assert first[0] == alone[0] and model.predict_proba(x[:1]).allclose(model.predict_proba(x)[:1], atol=1e-6)


def test_vae_codes_are_means_or_samples_of_the_posterior():
    torch.manual_seed(0)
    model = vae.VAE(priors.Gaussian(2, 1.0), HIDDEN)
    x = torch.rand(500, 784)
    means, again = model.encode(x), model.encode(x)
    samples = model.encode(x, sample=True)
    assert torch.equal(means, again) and samples.shape == means.shape
    sigma = (0.5 * model.encoder(x).chunk(2, dim=1)[1]).exp()  # the posterior's standard deviations
    z = (samples - means) / sigma  # standardised draws: N(0, I) if the samples come from q(z|x)
    assert abs(z.mean().item()) < 0.15 and abs(z.std().item() - 1) < 0.1


@pytest.mark.parametrize("build, error, message", [
    (lambda: AAE("gaussian"), TypeError, "prior must be a Prior"),
    (lambda: CategoricalAAE(10.0), ValueError, "n_classes must be an int >= 2, got 10.0"),
    (lambda: CategoricalAAE(10, 4.0), ValueError, "z_dim must be an int"),
    (lambda: CategoricalAAE(10, 4, z_std=float("inf")), ValueError, "z_std must be a finite number"),
    (lambda: CategoricalAAE(10, 4, (8.0,)), ValueError, "layer size .* got 8.0"),
])
def test_models_refuse_bad_arguments_naming_them(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_bad_inputs_to_encode_decode_and_the_step_name_the_argument():
    from aae_tutorial.aae import AAE
    from aae_tutorial.categorical import CategoricalAAE
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got -5"):
        AAE(priors.Gaussian(2, 1.0), (8, 8)).encode(torch.rand(3, 784), batch_size=-5)
    model = CategoricalAAE(10, 2, (8, 8))
    with pytest.raises(ValueError, match=r"y must lie in 0\.\.9"):
        model.decode(torch.tensor([10]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="one style per category"):
        model.decode(torch.tensor([1, 2]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="one label per image, got 4 images and 3 labels"):
        model.train_step(torch.rand(4, 784), torch.rand(4, 784), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("build", [lambda r: AAE(priors.Gaussian(2), (8,), r),
                                   lambda r: vae.VAE(priors.Gaussian(2), (8,), r),
                                   lambda r: CategoricalAAE(10, 2, (8,), recipe=r),
                                   lambda r: SupervisedAAE(priors.Gaussian(2), (8,), 10, r)])
@pytest.mark.parametrize("wrong", ["paper", 1e-3])
def test_every_model_refuses_a_recipe_that_is_not_a_recipe(build, wrong):
    with pytest.raises(TypeError, match="recipe must be a Recipe, e.g. recipes.COURSE"):
        build(wrong)


def test_supervised_step_refuses_classes_that_do_not_match_the_images():
    model = SupervisedAAE(priors.Gaussian(2), (8,))
    with pytest.raises(ValueError, match="one class per image: 5 classes for 20 images"):
        model.train_step(torch.rand(20, 784), torch.zeros(5, dtype=torch.long))
