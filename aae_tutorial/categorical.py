"""The AAE with a categorical code: semi-supervised classification (paper section 5), unsupervised clustering
(section 6) and dimensionality reduction with cluster heads (section 7).

The encoder has two heads: q(y|x), a softmax over ``n_classes`` categories, and q(z|x), a continuous style code.
Two discriminators push q(y) towards a uniform categorical distribution and q(z) towards N(0, z_std^2 I).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import checks, metrics, nets
from .data import LabelledSet
from .priors import check_classes
from .recipes import COURSE, Recipe
from .steps import frozen, gan_loss, reconstruction_loss, update


class CategoryUseEntropy(nn.Module):
    """H(q̄), the entropy (nats) of the categories' mean probability q̄ = mean over the minibatch of q(y|x): log k when
    all k categories are used equally, 0 when one takes everything. ``members`` is set by
    :func:`aae_tutorial.engine.stack`, so that each model of an ensemble averages over its own rows only."""

    members = 1

    def forward(self, q: Tensor) -> Tensor:
        q_mean = q.reshape(self.members, -1, q.shape[-1]).mean(1)  # (members, k)
        return torch.special.entr(q_mean).sum(-1).mean()


class CategoricalAAE(nets.RecordsInit, nn.Module):
    """Encoder x -> (y logits, z); decoder (y, z) -> x; discriminators on y and on z.

    ``head_dim > 0`` switches to the dimensionality-reduction variant: the decoder sees ``W_C y + z``, where the
    rows of ``W_C`` (``heads.weight.T``) are learned cluster heads in ``head_dim`` dimensions, kept at least
    ``head_gap`` apart by a hinge penalty (section 7). Then ``z_dim`` must equal ``head_dim``.

    ``recipe`` sets the optimisers, the reconstruction cost and the generator loss (:mod:`aae_tutorial.recipes`).
    Two departures from the paper, off by default; the chapters that use them say so and measure them:

    * ``batch_norm`` normalises each hidden layer of the encoder's trunk;
    * ``balance > 0`` adds ``-balance * H(mean of q(y|x) over the minibatch)`` to the generator phase, a direct push
      towards using every category (:class:`CategoryUseEntropy`).
    """

    def __init__(self, n_classes: int = 10, z_dim: int = 10, hidden: Sequence[int] = nets.PAPER_HIDDEN, *,
                 z_std: float = 1.0, head_dim: int = 0, head_gap: float = 6.0, input_noise: float = 0.3,
                 recipe: Recipe = COURSE, batch_norm: bool = False, balance: float = 0.0) -> None:
        super().__init__()
        checks.count(n_classes, "n_classes", 2), checks.count(z_dim, "z_dim"), checks.count(head_dim, "head_dim", 0)
        checks.positive(z_std, "z_std"), checks.positive(head_gap, "head_gap", zero=True)
        checks.positive(input_noise, "input_noise", zero=True), checks.positive(balance, "balance", zero=True)
        if head_dim and head_dim != z_dim:
            raise ValueError(f"with cluster heads the style must live in the same space: z_dim={z_dim} != head_dim={head_dim}")
        self.n_classes, self.z_dim, self.head_dim, self.head_gap = n_classes, z_dim, head_dim, head_gap
        self.recipe = checks.recipe(recipe)
        self.balance, self.category_use_entropy = balance, CategoryUseEntropy()
        self.input_noise, self.z_std = input_noise, z_std  # the style prior is N(0, z_std^2 I)
        self.trunk = nn.Sequential(*nets.hidden_layers([784, *hidden], batch_norm))  # x (B, 784) -> h (B, hidden[-1])
        self.y_head = nn.Linear(hidden[-1], n_classes)  # h -> y logits (B, n_classes); softmax applied once, later
        self.z_head = nn.Linear(hidden[-1], z_dim)  # h -> z (B, z_dim)
        self.heads = nn.Linear(n_classes, head_dim, bias=False) if head_dim else None  # W_C
        self.decoder = nets.decoder(z_dim if head_dim else n_classes + z_dim, hidden)
        self.d_y = nets.discriminator(n_classes, hidden)
        self.d_z = nets.discriminator(z_dim, hidden)
        recipe.initialise(self)
        if self.heads is not None:  # start the heads spread out: the hinge penalty only moves them slowly
            nn.init.normal_(self.heads.weight, std=head_gap)
        encoder = [*self.trunk.parameters(), *self.y_head.parameters(), *self.z_head.parameters()]
        autoencoder = [*encoder, *self.decoder.parameters(), *(self.heads.parameters() if self.heads else [])]
        self.opt_ae = recipe.optimiser_for(autoencoder, "reconstruction")
        self.opt_d = recipe.optimiser_for([*self.d_y.parameters(), *self.d_z.parameters()], "adversarial")
        self.opt_g = recipe.optimiser_for(encoder, "adversarial")
        self.opt_c = recipe.optimiser_for([*self.trunk.parameters(), *self.y_head.parameters()], "classification")

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
        """Sum over pairs of cluster heads of max(0, head_gap - distance): pushes heads at least head_gap apart.
        The heads of an ensemble's members (:func:`aae_tutorial.engine.stack`) are penalised each on their own."""
        w = self.heads.weight.transpose(-1, -2)  # (n_classes, head_dim); (M, n_classes, head_dim) in an ensemble
        d = torch.cdist(w, w)  # (n_classes, n_classes), per member
        pairs = torch.triu(F.relu(self.head_gap - d), diagonal=1)  # each pair i < j once
        return pairs.sum((-2, -1)).mean()  # an ensemble's members' mean, like every other loss

    def train_step(self, x: Tensor, x_labelled: Tensor | None = None,
                   y_labelled: Tensor | None = None) -> dict[str, Tensor]:
        """One minibatch of the three phases; the third (classification) runs only when a labelled batch is given."""
        if (x_labelled is None) != (y_labelled is None):
            raise ValueError("give both x_labelled and y_labelled for the classification phase, or neither")
        if x_labelled is not None and len(x_labelled) != len(y_labelled):
            raise ValueError(f"x_labelled and y_labelled must have one label per image, got {len(x_labelled)} images "
                             f"and {len(y_labelled)} labels")
        n = len(x)
        # Phase 1, reconstruction of unlabelled data: update encoder + decoder (+ cluster heads).
        y_logits, z = self.encode(x, noisy=True)
        x_hat = self.decoder(self.representation(y_logits.softmax(1), z))
        loss_rec = reconstruction_loss(x_hat, x, self.recipe.reconstruction)
        if self.heads is not None:
            loss_rec = loss_rec + self.head_penalty()
        update(self.opt_ae, loss_rec)

        # Phase 2a, regularisation: each discriminator tells prior samples from the encoder's outputs.
        y_real = F.one_hot(torch.randint(self.n_classes, (n,), device=x.device), self.n_classes).float()
        z_real = self.z_std * torch.randn(n, self.z_dim, device=x.device)
        with torch.no_grad():
            y_logits, z_fake = self.encode(x, noisy=True)
        loss_d = (gan_loss(self.d_y(y_real), True) + gan_loss(self.d_y(y_logits.softmax(1)), False)
                  + gan_loss(self.d_z(z_real), True) + gan_loss(self.d_z(z_fake), False))
        update(self.opt_d, loss_d)

        # Phase 2b, regularisation: the encoder tries to fool both discriminators.
        with frozen(self.d_y, self.d_z):
            y_logits, z = self.encode(x, noisy=True)
            q = y_logits.softmax(1)  # (B, n_classes)
            loss_g = self.recipe.generator(self.d_y(q)) + self.recipe.generator(self.d_z(z))
            if self.balance:  # not in the paper: reward using every category (chapter 7)
                loss_g = loss_g - self.balance * self.category_use_entropy(q)
        update(self.opt_g, loss_g)
        losses = {"reconstruction": loss_rec, "discriminator": loss_d, "generator": loss_g}

        # Phase 3, semi-supervised classification: cross-entropy of q(y|x) on a labelled minibatch.
        if x_labelled is not None:
            check_classes(y_labelled, self.n_classes, "y_labelled")
            loss_c = F.cross_entropy(self.encode(x_labelled, noisy=True)[0], y_labelled)  # takes logits
            update(self.opt_c, loss_c)
            losses["classification"] = loss_c
        return losses

    @torch.no_grad()
    def predict_proba(self, x: Tensor, batch_size: int = 10_000) -> Tensor:
        """q(y|x) of each image, without input noise: (N, 784) -> (N, n_classes)."""
        checks.count(batch_size, "batch_size")
        return torch.cat([self.encode(x[i : i + batch_size])[0].float().softmax(1) for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 10_000) -> tuple[Tensor, Tensor]:
        """Most likely category (N,) and style code (N, z_dim) of each image, without input noise."""
        checks.count(batch_size, "batch_size")
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
        check_classes(y, self.n_classes, "y")
        if z.ndim != 2 or z.shape != (len(y), self.z_dim):
            raise ValueError(f"z must be ({len(y)}, {self.z_dim}): one style per category, got {tuple(z.shape)}")
        return torch.sigmoid(self.decoder(self.representation(F.one_hot(y, self.n_classes).float(), z)).float())


def classification_error(model: CategoricalAAE, x: Tensor, y: Tensor) -> float:
    """Test error (%) of the categorical code read as a classifier: category i *is* digit i (section 5)."""
    return metrics.error_rate(model.predict(x)[0], y)


def clustering_error(model: CategoricalAAE, x: Tensor, y: Tensor, x_valid: Tensor, y_valid: Tensor) -> float:
    """Test error (%) of the clusters under the paper's rule (section 6): each cluster takes the label of the
    validation image it is most confident about (:func:`metrics.paper_cluster_labels`)."""
    names = metrics.paper_cluster_labels(model.predict_proba(x_valid), y_valid)
    return metrics.error_rate(names[model.predict(x)[0]], y)


def clustering_scores(models: Sequence[CategoricalAAE], test: tuple[Tensor, Tensor], valid: tuple[Tensor, Tensor],
                      train: tuple[Tensor, Tensor]) -> dict[str, list]:
    """Section 6's scores of each model on the test images: ``errors`` by the paper's rule (each cluster named by its
    most confident validation image), ``majority_rule_errors`` (each cluster named by its training images' majority
    label) and ``clusters_used`` (categories holding at least 0.5 % of the test images)."""
    scores: dict[str, list] = {"errors": [], "majority_rule_errors": [], "clusters_used": []}
    for model in models:
        assigned = model.predict(test[0])[0]
        named = metrics.majority_cluster_labels(model.predict(train[0])[0], train[1], model.n_classes)
        scores["errors"].append(clustering_error(model, *test, *valid))
        scores["majority_rule_errors"].append(round(metrics.error_rate(named[assigned], test[1]), 2))
        scores["clusters_used"].append(metrics.clusters_used(assigned, model.n_classes))
    return scores


def semisupervised_step(model: CategoricalAAE, x: Tensor,
                        labelled: LabelledSet) -> Callable[[Tensor], dict[str, Tensor]]:
    """The training step of section 5: the unlabelled minibatch ``x[idx]`` and, every step, a fresh random labelled
    minibatch of the same size. An epoch is one pass over the unlabelled set, and a small labelled set is cycled
    through many times per epoch; zipping the two loaders instead would end the epoch after one labelled pass."""
    def step(idx: Tensor) -> dict[str, Tensor]:
        x_labelled, y_labelled = labelled.sample(len(idx))  # drawn with replacement, every step
        return model.train_step(x[idx], x_labelled, y_labelled)

    return step


def labels_only_step(model: CategoricalAAE, labelled: LabelledSet) -> Callable[[Tensor], dict[str, Tensor]]:
    """The baseline for section 5: the same encoder trained on the labelled images alone. Each step is the
    classification phase only, on a fresh random labelled minibatch of the size of ``idx``; the unlabelled images
    are never read, so an epoch has as many steps as the semi-supervised AAE's."""
    def step(idx: Tensor) -> dict[str, Tensor]:
        x_labelled, y_labelled = labelled.sample(len(idx))
        loss_c = F.cross_entropy(model.encode(x_labelled, noisy=True)[0], y_labelled)  # takes logits
        update(model.opt_c, loss_c)
        return {"classification": loss_c}

    return step


def error_tracker(model: CategoricalAAE, splits: dict[str, tuple[Tensor, Tensor]],
                  name_clusters_with: tuple[Tensor, Tensor] | None = None) -> Callable[[int], dict[str, float]]:
    """A per-epoch callback for :func:`aae_tutorial.train.fit` that logs ``<split>_error`` on every split.

    Without ``name_clusters_with`` category i is digit i (classification). With it, ``(x_valid, y_valid)`` name the
    clusters by the paper's rule; then ``clusters_used`` (categories with at least 0.5 % of the validation images)
    and ``d_y_on_one_hot`` (the categorical discriminator's mean probability of "real" for the k one-hot codes) are
    logged too: the two collapse diagnostics.
    """
    def on_epoch_end(epoch: int) -> dict[str, float]:
        if name_clusters_with is None:
            return {f"{split}_error": classification_error(model, x, y) for split, (x, y) in splits.items()}
        x_valid, y_valid = name_clusters_with
        out = {f"{split}_error": clustering_error(model, x, y, x_valid, y_valid) for split, (x, y) in splits.items()}
        with torch.no_grad():
            eye = torch.eye(model.n_classes, device=x_valid.device)
            out["d_y_on_one_hot"] = torch.sigmoid(model.d_y(eye)).mean().item()
        out["clusters_used"] = metrics.clusters_used(model.predict(x_valid)[0], model.n_classes)
        return out

    return on_epoch_end
