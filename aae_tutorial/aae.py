"""The adversarial autoencoder (paper section 2) and its label-conditioned variant (section 4).

Each minibatch runs the paper's two phases, each with its own optimiser:

1. **reconstruction**: encoder and decoder minimise the reconstruction error of x;
2. **regularisation**: the discriminator learns to tell prior samples z ~ p(z) ("real") from codes z = q(x)
   ("fake"); then the encoder, acting as the generator, is updated to make its codes look real.

At the equilibrium of phase 2 the aggregated posterior q(z) = E_x[q(z|x)] matches the prior p(z).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import nets
from .priors import Prior
from .train import adam


def update(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One gradient step on ``loss`` for the parameters ``optimizer`` owns (and only those)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Stop gradients into ``module``'s weights (they still flow *through* it), e.g. D in the generator phase."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """Binary cross-entropy of discriminator logits against "real" (1) or "fake" (0); the sigmoid is inside."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bf16 on CUDA GPUs that support it, else None (full fp32)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class AAE(nn.Module):
    """Adversarial autoencoder with an arbitrary prior (figure 1 of the paper).

    With ``num_labels > 0`` the discriminator also sees a one-hot label with one extra "no label" class, and real
    codes for a labelled example are drawn from the prior component of its label (section 4, figure 3).
    With ``decoder_classes > 0`` the decoder also gets the one-hot class, so the code is left to carry the style
    (the supervised AAE of section 5, figure 6).
    """

    def __init__(self, prior: Prior, hidden: Sequence[int] = nets.PAPER_HIDDEN, num_labels: int = 0,
                 decoder_classes: int = 0, lr: float = 1e-3, adv_lr: float = 1e-3, recon: str = "bce",
                 precision: torch.dtype | None = None) -> None:
        super().__init__()
        if num_labels and num_labels != prior.num_components:
            raise ValueError(f"num_labels={num_labels} but the prior has {prior.num_components} components")
        self.prior, self.num_labels, self.recon, self.precision = prior, num_labels, recon, precision
        self.decoder_classes = decoder_classes
        z_dim = prior.dim
        self.encoder = nets.encoder(z_dim, hidden)  # x (B, 784) -> z (B, z_dim)
        self.decoder = nets.decoder(z_dim + decoder_classes, hidden)  # z (B, z_dim [+ classes]) -> logits (B, 784)
        label_channels = num_labels + 1 if num_labels else 0  # + the "no label" class
        self.discriminator = nets.discriminator(z_dim + label_channels, hidden)  # (B, z_dim [+ labels]) -> (B, 1)
        self.opt_ae = adam([*self.encoder.parameters(), *self.decoder.parameters()], lr)
        self.opt_d = adam(self.discriminator.parameters(), adv_lr, betas=(0.5, 0.999))
        self.opt_g = adam(self.encoder.parameters(), adv_lr, betas=(0.5, 0.999))

    def _autocast(self, x: Tensor) -> contextlib.AbstractContextManager:
        return torch.autocast(x.device.type, self.precision, enabled=self.precision is not None)

    def _judge(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Discriminator logits for codes z (B, z_dim), with the label one-hot appended when conditioned."""
        if self.num_labels:
            z = torch.cat([z, F.one_hot(labels, self.num_labels + 1).to(z.dtype)], 1)
        return self.discriminator(z)

    def _decoder_input(self, z: Tensor, classes: Tensor | None) -> Tensor:
        if self.decoder_classes:
            if classes is None:
                raise ValueError("this AAE's decoder needs the class of each example (decoder_classes > 0)")
            z = torch.cat([z, F.one_hot(classes, self.decoder_classes).to(z.dtype)], 1)
        return z

    def train_step(self, x: Tensor, labels: Tensor | None = None, classes: Tensor | None = None) -> dict[str, Tensor]:
        """One minibatch of both phases.

        ``labels`` (B,) condition the discriminator, with ``num_labels`` meaning "unlabelled"; ``classes`` (B,) are
        fed to the decoder of a supervised AAE.
        """
        if self.num_labels and labels is None:
            raise ValueError("a label-conditioned AAE needs labels (use num_labels for unlabelled examples)")
        # Phase 1, reconstruction: update encoder + decoder.
        with self._autocast(x):
            logits = self.decoder(self._decoder_input(self.encoder(x), classes))
            loss_rec = nets.reconstruction_loss(logits, x, self.recon)
        update(self.opt_ae, loss_rec)

        # Phase 2a, regularisation: the discriminator separates prior samples from codes.
        component = None
        if self.num_labels:  # labelled -> its own component, unlabelled -> a random one (= the whole mixture)
            random_component = torch.randint_like(labels, self.num_labels)
            component = torch.where(labels == self.num_labels, random_component, labels)
        z_real = self.prior.sample(len(x), component)  # (B, z_dim)
        with torch.no_grad(), self._autocast(x):
            z_fake = self.encoder(x)  # no gradient into the encoder in this phase
        with self._autocast(x):
            loss_d = gan_loss(self._judge(z_real, labels), True) + gan_loss(self._judge(z_fake, labels), False)
        update(self.opt_d, loss_d)

        # Phase 2b, regularisation: the encoder (generator) tries to fool the discriminator.
        with frozen(self.discriminator), self._autocast(x):
            loss_g = gan_loss(self._judge(self.encoder(x), labels), True)
        update(self.opt_g, loss_g)
        return {"reconstruction": loss_rec, "discriminator": loss_d, "generator": loss_g}

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 10_000) -> Tensor:
        """Codes of many images, in batches: (N, 784) -> (N, z_dim)."""
        return torch.cat([self.encoder(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def decode(self, z: Tensor, classes: Tensor | None = None) -> Tensor:
        """Images from codes (and classes, for a supervised AAE): (N, z_dim) -> (N, 784) in [0, 1]."""
        return torch.sigmoid(self.decoder(self._decoder_input(z, classes)).float())

    @torch.no_grad()
    def generate(self, n: int, classes: Tensor | None = None) -> Tensor:
        """n new images decoded from prior samples: (n, 784)."""
        return self.decode(self.prior.sample(n), classes)
