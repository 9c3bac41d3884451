"""The pieces every training step is built from (paper section 2): one optimiser update, a frozen module, the GAN
loss of a discriminator and the reconstruction loss. Each model's ``train_step`` is written with these alone."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def update(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One gradient step on ``loss`` for the parameters ``optimizer`` owns (and only those)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Stop gradients into the modules' weights (they still flow *through* them), e.g. D in the generator phase."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """Binary cross-entropy of discriminator logits against "real" (1) or "fake" (0); the sigmoid is inside."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def reconstruction_loss(logits: Tensor, x: Tensor, kind: str = "bce") -> Tensor:
    """Reconstruction cost of pixel ``logits`` (B, 784) against images ``x`` (B, 784) in [0, 1], averaged over the
    batch.

    ``bce`` treats each pixel as a Bernoulli probability, summed over the pixels (what the course trains with from
    chapter 2 on); ``mse`` is a Euclidean cost on ``sigmoid(logits)``, summed over the pixels (compared with BCE in
    chapter 1); ``mse-mean`` is the same cost averaged over the pixels, as the paper's recipe computes it (see
    :data:`aae_tutorial.recipes.PAPER_SOURCES`): at one learning rate, a step 784 times smaller than ``mse``'s.
    """
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind in ("mse", "mse-mean"):
        per_pixel = (torch.sigmoid(logits) - x) ** 2
    else:
        raise ValueError(f"kind must be 'bce', 'mse' or 'mse-mean', got {kind!r}")
    return per_pixel.mean() if kind == "mse-mean" else per_pixel.sum(1).mean()
