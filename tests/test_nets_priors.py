import math

import pytest
import torch

from aae_tutorial import nets, priors, steps


def test_paper_shapes_and_parameter_counts():
    enc, dec, disc = nets.encoder(8), nets.decoder(8), nets.discriminator(8)
    x = torch.rand(5, 784)
    assert enc(x).shape == (5, 8) and dec(enc(x)).shape == (5, 784) and disc(enc(x)).shape == (5, 1)
    assert nets.n_params(enc) == 784 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 8 + 8
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in disc.modules())


@pytest.mark.parametrize("sizes, message", [([784], "at least two layer sizes"), ([784, 0, 2], "int >= 1, got 0"),
                                            ([784, 2.5, 2], "got 2.5"), ([784, 10.0], "got 10.0")])
def test_mlp_rejects_bad_sizes(sizes, message):
    with pytest.raises(ValueError, match=message):
        nets.mlp(sizes)


def test_reconstruction_losses():
    x = torch.rand(4, 784)
    logits = torch.logit(x.clamp(1e-4, 1 - 1e-4))
    assert steps.reconstruction_loss(logits, x, "mse") < 1e-3
    assert steps.reconstruction_loss(logits, x, "bce") > 0
    # BCE summed over pixels, averaged over the batch: an all-0.5 prediction costs 784 log 2 per image
    assert steps.reconstruction_loss(torch.zeros(4, 784), torch.ones(4, 784)).item() == pytest.approx(784 * math.log(2))
    # the per-pixel mean is the summed cost / 784: an all-0.5 prediction of white images costs 0.25 either way per pixel
    half, white = torch.zeros(4, 784), torch.ones(4, 784)
    assert steps.reconstruction_loss(half, white, "mse-mean").item() == pytest.approx(0.25)
    assert steps.reconstruction_loss(half, white, "mse").item() == pytest.approx(784 * 0.25)
    with pytest.raises(ValueError, match="'bce', 'mse' or 'mse-mean'"):
        steps.reconstruction_loss(logits, x, "l1")


def test_gaussian_and_uniform_moments():
    torch.manual_seed(0)
    g = priors.Gaussian(dim=3, std=5.0).sample(200_000)
    assert g.mean(0).abs().max() < 0.05 and (g.std(0) - 5).abs().max() < 0.05
    u = priors.Uniform(dim=2, half_width=5.0).sample(200_000)
    assert u.abs().max() <= 5 and (u.var(0) - 25 / 3).abs().max() < 0.1


def test_mixture_components_and_assignment():
    torch.manual_seed(0)
    p = priors.GaussianMixture(n_components=10, radius=4.0)
    labels = torch.arange(10).repeat(1000)
    z = p.sample(len(labels), labels)
    assert (p.assign(z) == labels).float().mean() > 0.95
    for c in (0, 3):  # component c sits at angle 2 pi c / 10, radius 4
        mean = z[labels == c].mean(0)
        expected = 4 * torch.tensor([math.cos(2 * math.pi * c / 10), math.sin(2 * math.pi * c / 10)])
        assert torch.allclose(mean, expected, atol=0.1)
    unlabelled = p.sample(20_000)
    assert (p.assign(unlabelled).bincount(minlength=10) > 1500).all()  # every component used


def test_swiss_roll_segments_follow_labels():
    torch.manual_seed(0)
    p = priors.SwissRoll(n_components=10, noise=0.0)
    labels = torch.arange(10).repeat(500)
    radius = p.sample(len(labels), labels).norm(dim=1)
    by_label = torch.stack([radius[labels == c].mean() for c in range(10)])
    assert (by_label.diff() > 0).all()  # later segments lie further out along the roll


def test_priors_reject_bad_input():
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        priors.Gaussian(2, std=0)
    with pytest.raises(ValueError, match="no components"):
        priors.Gaussian(2).sample(3, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        priors.GaussianMixture().sample(3, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative int"):
        priors.Uniform().sample(-1)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        priors.Gaussian(2, std=float("nan"))
    for bad, message in [(lambda: priors.Gaussian(2, std=float("inf")), "Gaussian's std .* got inf"),
                         (lambda: priors.SwissRoll(noise=float("inf")), "SwissRoll's noise .* got inf"),
                         (lambda: priors.GaussianMixture(radius=float("nan")), "GaussianMixture's radius .* got nan"),
                         (lambda: priors.Gaussian(2.0), "Gaussian's dim must be an int"),
                         (lambda: priors.GaussianMixture(n_components=True), "n_components must be an int")]:
        with pytest.raises(ValueError, match=message):
            bad()


def test_frozen_stops_gradients_into_weights_and_restores_flags():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    b.bias.requires_grad_(False)
    x = torch.randn(3, 2, requires_grad=True)
    with steps.frozen(a, b):
        b(a(x)).sum().backward()
    assert a.weight.grad is None and x.grad is not None  # gradients flow through, not into
    assert a.weight.requires_grad and not b.bias.requires_grad  # each flag restored as it was
