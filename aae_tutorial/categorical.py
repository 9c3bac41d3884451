"""The AAE with a categorical code: semi-supervised classification (paper section 5), unsupervised clustering
(section 6) and dimensionality reduction with cluster heads (section 7).

The encoder has two heads: q(y|x), a softmax over ``n_classes`` categories, and q(z|x), a continuous style code.
Two discriminators push q(y) towards a uniform categorical distribution and q(z) towards N(0, z_std^2 I).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import metrics, nets
from .aae import frozen, gan_loss, update
from .mode import RunMode
from .train import Run, adam, fit_or_load


class CategoricalAAE(nn.Module):
    """Encoder x -> (y logits, z); decoder (y, z) -> x; discriminators on y and on z.

    ``head_dim > 0`` switches to the dimensionality-reduction variant: the decoder sees ``W_C y + z``, where the
    rows of ``W_C`` (``heads.weight.T``) are learned cluster heads in ``head_dim`` dimensions, kept at least
    ``head_gap`` apart by a hinge penalty (section 7). Then ``z_dim`` must equal ``head_dim``.
    """

    def __init__(self, n_classes: int = 10, z_dim: int = 10, hidden: Sequence[int] = nets.PAPER_HIDDEN, *,
                 z_std: float = 1.0, head_dim: int = 0, head_gap: float = 6.0, input_noise: float = 0.3,
                 lr: float = 1e-3, adv_lr: float = 2e-4, clf_lr: float = 1e-3,
                 precision: torch.dtype | None = None) -> None:
        super().__init__()
        if n_classes < 2 or z_dim < 1:
            raise ValueError(f"need n_classes >= 2 and z_dim >= 1, got {n_classes}, {z_dim}")
        if head_dim and head_dim != z_dim:
            raise ValueError(f"with cluster heads the style must live in the same space: z_dim={z_dim} != head_dim={head_dim}")
        self.n_classes, self.z_dim, self.head_dim, self.head_gap = n_classes, z_dim, head_dim, head_gap
        self.input_noise, self.precision = input_noise, precision
        self.z_std = z_std  # the style prior is N(0, z_std^2 I)
        self.trunk = nn.Sequential(nets.mlp([784, *hidden]), nn.ReLU())  # x (B, 784) -> h (B, hidden[-1])
        self.y_head = nn.Linear(hidden[-1], n_classes)  # h -> y logits (B, n_classes); softmax applied once, later
        self.z_head = nn.Linear(hidden[-1], z_dim)  # h -> z (B, z_dim)
        self.heads = nn.Linear(n_classes, head_dim, bias=False) if head_dim else None  # W_C
        if self.heads is not None:  # start the heads spread out: the hinge penalty only moves them slowly
            nn.init.normal_(self.heads.weight, std=head_gap)
        self.decoder = nets.decoder(z_dim if head_dim else n_classes + z_dim, hidden)
        self.d_y = nets.discriminator(n_classes, hidden)
        self.d_z = nets.discriminator(z_dim, hidden)
        encoder = [*self.trunk.parameters(), *self.y_head.parameters(), *self.z_head.parameters()]
        self.opt_ae = adam([*encoder, *self.decoder.parameters(), *(self.heads.parameters() if self.heads else [])], lr)
        self.opt_d = adam([*self.d_y.parameters(), *self.d_z.parameters()], adv_lr, betas=(0.5, 0.999))
        self.opt_g = adam(encoder, adv_lr, betas=(0.5, 0.999))
        self.opt_c = adam([*self.trunk.parameters(), *self.y_head.parameters()], clf_lr)

    def _autocast(self, x: Tensor) -> contextlib.AbstractContextManager:
        return torch.autocast(x.device.type, self.precision, enabled=self.precision is not None)

    def encode(self, x: Tensor, noisy: bool = False) -> tuple[Tensor, Tensor]:
        """(y logits (B, n_classes), z (B, z_dim)); ``noisy`` adds the training-time Gaussian input noise."""
        if noisy and self.input_noise:
            x = x + self.input_noise * torch.randn_like(x)
        h = self.trunk(x)
        return self.y_head(h), self.z_head(h)

    def representation(self, y_prob: Tensor, z: Tensor) -> Tensor:
        """What the decoder sees: [y, z] concatenated, or the cluster head W_C y plus the style z."""
        return self.heads(y_prob) + z if self.heads is not None else torch.cat([y_prob, z], 1)

    def head_penalty(self) -> Tensor:
        """Sum over pairs of cluster heads of max(0, head_gap - distance): pushes heads at least head_gap apart."""
        w = self.heads.weight.T  # (n_classes, head_dim)
        d = torch.cdist(w, w)
        pairs = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
        return F.relu(self.head_gap - d[pairs]).sum()

    def train_step(self, x: Tensor, x_labelled: Tensor | None = None,
                   y_labelled: Tensor | None = None) -> dict[str, Tensor]:
        """One minibatch of the three phases; the third (classification) runs only when a labelled batch is given."""
        n = len(x)
        # Phase 1, reconstruction of unlabelled data: update encoder + decoder (+ cluster heads).
        with self._autocast(x):
            y_logits, z = self.encode(x, noisy=True)
            logits = self.decoder(self.representation(y_logits.softmax(1), z))
            loss_rec = nets.reconstruction_loss(logits, x)
            if self.heads is not None:
                loss_rec = loss_rec + self.head_penalty()
        update(self.opt_ae, loss_rec)

        # Phase 2a, regularisation: each discriminator tells prior samples from the encoder's outputs.
        y_real = F.one_hot(torch.randint(self.n_classes, (n,), device=x.device), self.n_classes).float()
        z_real = self.z_std * torch.randn(n, self.z_dim, device=x.device)
        with torch.no_grad(), self._autocast(x):
            y_logits, z_fake = self.encode(x, noisy=True)
        with self._autocast(x):
            loss_d = (gan_loss(self.d_y(y_real), True) + gan_loss(self.d_y(y_logits.softmax(1)), False)
                      + gan_loss(self.d_z(z_real), True) + gan_loss(self.d_z(z_fake), False))
        update(self.opt_d, loss_d)

        # Phase 2b, regularisation: the encoder tries to fool both discriminators.
        with frozen(self.d_y), frozen(self.d_z), self._autocast(x):
            y_logits, z = self.encode(x, noisy=True)
            loss_g = gan_loss(self.d_y(y_logits.softmax(1)), True) + gan_loss(self.d_z(z), True)
        update(self.opt_g, loss_g)
        losses = {"reconstruction": loss_rec, "discriminator": loss_d, "generator": loss_g}

        # Phase 3, semi-supervised classification: cross-entropy of q(y|x) on a labelled minibatch.
        if x_labelled is not None:
            with self._autocast(x):
                loss_c = F.cross_entropy(self.encode(x_labelled, noisy=True)[0], y_labelled)  # takes logits
            update(self.opt_c, loss_c)
            losses["classification"] = loss_c
        return losses

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 10_000) -> tuple[Tensor, Tensor]:
        """Most likely category (N,) and style code (N, z_dim) of each image, without input noise."""
        ys, zs = [], []
        for i in range(0, len(x), batch_size):
            y_logits, z = self.encode(x[i : i + batch_size])
            ys.append(y_logits.argmax(1))
            zs.append(z.float())
        return torch.cat(ys), torch.cat(zs)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """The low-dimensional representation W_C y + z of each image (dimensionality-reduction variant)."""
        y, z = self.predict(x)
        return self.representation(F.one_hot(y, self.n_classes).float(), z)

    @torch.no_grad()
    def decode(self, y: Tensor, z: Tensor) -> Tensor:
        """Images from categories (N,) and styles (N, z_dim): (N, 784) in [0, 1]."""
        return torch.sigmoid(self.decoder(self.representation(F.one_hot(y, self.n_classes).float(), z)).float())


def error(model: CategoricalAAE, x: Tensor, y: Tensor, mapping_from: tuple[Tensor, Tensor] | None = None) -> float:
    """Test error (%) of the categorical code.

    Semi-supervised (``mapping_from=None``): category i *is* digit i. Clustering: each cluster predicts the majority
    label of the ``mapping_from=(x_train, y_train)`` images assigned to it (paper section 6).
    """
    pred = model.predict(x)[0]
    if mapping_from is None:
        return metrics.error_rate(pred, y)
    return metrics.cluster_error(model.predict(mapping_from[0])[0], mapping_from[1], pred, y, model.n_classes)


def fit_categorical(name: str, model: CategoricalAAE, x: Tensor, config: dict, epochs: int, mode: RunMode,
                    device: torch.device | str, labelled: tuple[Tensor, Tensor] | None = None,
                    evaluate: dict[str, tuple[Tensor, Tensor]] | None = None,
                    mapping_from: tuple[Tensor, Tensor] | None = None) -> Run:
    """Train (or load) a categorical AAE; an epoch is one pass over the *unlabelled* set ``x``.

    With ``labelled=(x_l, y_l)`` every step also draws a random labelled minibatch of the same size (phase 3), so a
    small labelled set is cycled through many times per epoch instead of truncating the epoch. After each epoch the
    error on every split in ``evaluate`` (e.g. validation and test) is logged as ``<split>_error``.
    """
    def step(idx: Tensor) -> dict[str, Tensor]:
        if labelled is None:
            return model.train_step(x[idx])
        j = torch.randint(len(labelled[0]), (len(idx),), device=x.device)
        return model.train_step(x[idx], labelled[0][j], labelled[1][j])

    def on_epoch_end(epoch: int) -> dict[str, float]:
        return {f"{split}_error": error(model, xs, ys, mapping_from) for split, (xs, ys) in (evaluate or {}).items()}

    return fit_or_load(name, model, config, step, len(x), epochs, mode, device, on_epoch_end=on_epoch_end)


def selected_epoch(run: Run, by: str = "valid_error") -> int:
    """Index of the epoch with the lowest ``by`` metric: model selection on the validation split."""
    values = run.history.metrics[by]
    return min(range(len(values)), key=values.__getitem__)
