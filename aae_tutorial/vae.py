"""The variational autoencoder (Kingma & Welling 2014), with the same networks as the AAE, for comparison.

Loss = reconstruction - ELBO regulariser: E_q[-log p(x|z)] + KL(q(z|x) || p(z)). For a Gaussian prior the KL has a
closed form; for any other prior (e.g. a mixture) we fall back to a one-sample Monte-Carlo estimate, which needs
``prior.log_prob``. That need is one of the limits the AAE removes (paper section 2.1).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import checks, nets
from .priors import Gaussian, Prior
from .recipes import COURSE, Recipe
from .steps import reconstruction_loss, update


class VAE(nets.RecordsInit, nn.Module):
    """A VAE with a Gaussian q(z|x). ``recipe`` gives its one optimiser (the reconstruction phase's) and its
    reconstruction cost; the VAE has no adversarial phase."""

    def __init__(self, prior: Prior, hidden: Sequence[int] = nets.PAPER_HIDDEN, recipe: Recipe = COURSE) -> None:
        super().__init__()
        if not hasattr(prior, "log_prob"):
            raise ValueError(f"a VAE needs a prior with a density; {type(prior).__name__} has no log_prob")
        self.prior, self.recipe = prior, checks.recipe(recipe)
        self.encoder = nets.encoder(2 * prior.dim, hidden)  # x (B, 784) -> [mu, log sigma^2] (B, 2 z_dim)
        self.decoder = nets.decoder(prior.dim, hidden)  # z (B, z_dim) -> logits (B, 784)
        recipe.initialise(self)
        self.opt = recipe.optimiser_for(self.parameters(), "reconstruction")

    def posterior(self, x: Tensor) -> torch.distributions.Distribution:
        mu, log_var = self.encoder(x).chunk(2, dim=1)  # (B, z_dim) each
        # validate_args=False: checking the scale's sign would read it back to the host, once per step
        normal = torch.distributions.Normal(mu, (0.5 * log_var).exp(), validate_args=False)
        return torch.distributions.Independent(normal, 1, validate_args=False)

    def kl(self, q: torch.distributions.Distribution, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) per example: closed form for a Gaussian prior, else log q(z|x) - log p(z) at z ~ q."""
        if isinstance(self.prior, Gaussian):
            return torch.distributions.kl_divergence(q, self.prior.dist)
        return q.log_prob(z) - self.prior.log_prob(z)

    def train_step(self, x: Tensor) -> dict[str, Tensor]:
        q = self.posterior(x)
        z = q.rsample()  # reparameterisation: z = mu + sigma * eps, differentiable in mu and sigma
        loss_rec = reconstruction_loss(self.decoder(z), x, self.recipe.reconstruction)
        loss_kl = self.kl(q, z).mean()
        update(self.opt, loss_rec + loss_kl)
        return {"reconstruction": loss_rec, "kl": loss_kl}

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 10_000, sample: bool = False) -> Tensor:
        """Codes of many images: (N, 784) -> (N, z_dim). The posterior means, or with ``sample`` one draw of
        z ~ q(z|x) per image, which is what the aggregated posterior q(z) is made of."""
        checks.count(batch_size, "batch_size")
        chunks = [self.posterior(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat([q.sample() if sample else q.mean for q in chunks])

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        return self.decode(self.prior.sample(n))
