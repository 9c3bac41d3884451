"""The adversarial autoencoder (paper section 2).

Each minibatch runs the paper's two phases, each with its own optimiser:

1. **reconstruction**: encoder and decoder minimise the reconstruction error of x;
2. **regularisation**: the discriminator learns to tell prior samples z ~ p(z) ("real") from codes z = q(x)
   ("fake"); then the encoder, acting as the generator, is updated to make its codes look real.

At the equilibrium of phase 2 the aggregated posterior q(z) = E_x[q(z|x)] matches the prior p(z).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import checks, nets
from .priors import Prior
from .recipes import COURSE, Recipe
from .steps import frozen, gan_loss, reconstruction_loss, update


class AAE(nets.RecordsInit, nn.Module):
    """Adversarial autoencoder with an arbitrary prior (figure 1 of the paper).

    ``extra_inputs`` widens the decoder and the discriminator for the variants of sections 4 and 5
    (:mod:`aae_tutorial.conditional`); the plain AAE has none. ``recipe`` sets the optimisers, the reconstruction
    cost and the generator loss (:mod:`aae_tutorial.recipes`).
    """

    def __init__(self, prior: Prior, hidden: Sequence[int] = nets.PAPER_HIDDEN, recipe: Recipe = COURSE) -> None:
        super().__init__()
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a Prior, e.g. priors.Gaussian(2, 5.0), got {prior!r}")
        self.prior, self.recipe = prior, checks.recipe(recipe)
        self.encoder = nets.encoder(prior.dim, hidden)  # x (B, 784) -> z (B, z_dim)
        self.decoder = nets.decoder(prior.dim + self.decoder_extra, hidden)  # z (B, z_dim [+ extra]) -> (B, 784)
        self.discriminator = nets.discriminator(prior.dim + self.discriminator_extra, hidden)  # -> logit (B, 1)
        recipe.initialise(self)
        self.opt_ae = recipe.optimiser_for([*self.encoder.parameters(), *self.decoder.parameters()], "reconstruction")
        self.opt_d = recipe.optimiser_for(self.discriminator.parameters(), "adversarial")
        self.opt_g = recipe.optimiser_for(self.encoder.parameters(), "adversarial")

    decoder_extra = 0  # extra decoder inputs (the one-hot class of a supervised AAE)
    discriminator_extra = 0  # extra discriminator inputs (the one-hot label of a label-conditioned AAE)

    def train_step(self, x: Tensor) -> dict[str, Tensor]:
        """One minibatch x (B, 784) of both phases."""
        # Phase 1, reconstruction: update encoder + decoder.
        loss_rec = reconstruction_loss(self.decoder(self.encoder(x)), x, self.recipe.reconstruction)
        update(self.opt_ae, loss_rec)
        # Phase 2, regularisation: match q(z) to p(z).
        return {"reconstruction": loss_rec, **self.regularise(x)}

    def regularise(self, x: Tensor) -> dict[str, Tensor]:
        """Phase 2 on a minibatch x (B, 784): first the discriminator, then the encoder as the generator."""
        # 2a: the discriminator separates prior samples ("real") from codes ("fake").
        z_real = self.prior.sample(len(x))  # (B, z_dim)
        with torch.no_grad():
            z_fake = self.encoder(x)  # no gradient into the encoder in this phase
        loss_d = gan_loss(self.discriminator(z_real), True) + gan_loss(self.discriminator(z_fake), False)
        update(self.opt_d, loss_d)

        # 2b: the encoder (generator) tries to fool the discriminator, whose weights stay fixed.
        with frozen(self.discriminator):
            loss_g = self.recipe.generator(self.discriminator(self.encoder(x)))  # minimax or non-saturating
        update(self.opt_g, loss_g)
        return {"discriminator": loss_d, "generator": loss_g}

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 10_000) -> Tensor:
        """Codes of many images, in batches: (N, 784) -> (N, z_dim)."""
        checks.count(batch_size, "batch_size")
        return torch.cat([self.encoder(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images from codes: (N, z_dim) -> (N, 784) in [0, 1]."""
        return torch.sigmoid(self.decoder(z).float())

    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        """n new images decoded from prior samples: (n, 784)."""
        return self.decode(self.prior.sample(n))
