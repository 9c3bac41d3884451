"""Two AAEs that use labels: the label-conditioned discriminator of paper section 2.3 and the supervised AAE of
section 4. Both are the AAE of section 2 with one extra one-hot input, in a different place."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from . import checks, nets
from .aae import AAE
from .priors import Prior, check_classes
from .recipes import COURSE, Recipe
from .steps import frozen, gan_loss, reconstruction_loss, update


class LabelConditionedAAE(AAE):
    """The discriminator also sees a one-hot label with one extra "no label" class (section 2.3, figures 3-4).

    A labelled image of digit c must put its code in component c of the prior; an unlabelled one (label
    ``n_classes``) only has to land somewhere in the prior.
    """

    def __init__(self, prior: Prior, hidden: Sequence[int] = nets.PAPER_HIDDEN, recipe: Recipe = COURSE) -> None:
        if not prior.n_components:
            raise ValueError(f"a label-conditioned AAE needs a prior with components, got {prior!r}")
        self.n_classes = prior.n_components
        self.discriminator_extra = self.n_classes + 1  # the digits + "no label"
        super().__init__(prior, hidden, recipe)

    def train_step(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """One minibatch x (B, 784) with ``labels`` (B,): a digit, or ``n_classes`` for "no label"."""
        check_classes(labels, self.n_classes + 1, "labels")
        one_hot = F.one_hot(labels, self.n_classes + 1).float()  # (B, n_classes + 1)
        # Phase 1, reconstruction.
        loss_rec = reconstruction_loss(self.decoder(self.encoder(x)), x, self.recipe.reconstruction)
        update(self.opt_ae, loss_rec)

        # Phase 2a: real codes come from the label's component; unlabelled ones from a random component.
        random_component = torch.randint_like(labels, self.n_classes)
        component = torch.where(labels == self.n_classes, random_component, labels)
        z_real = self.prior.sample(len(x), component)  # (B, 2)
        with torch.no_grad():
            z_fake = self.encoder(x)
        loss_d = (gan_loss(self.discriminator(torch.cat([z_real, one_hot], 1)), True)
                  + gan_loss(self.discriminator(torch.cat([z_fake, one_hot], 1)), False))
        update(self.opt_d, loss_d)

        # Phase 2b: the encoder fools the label-aware discriminator.
        with frozen(self.discriminator):
            loss_g = self.recipe.generator(self.discriminator(torch.cat([self.encoder(x), one_hot], 1)))
        update(self.opt_g, loss_g)
        return {"reconstruction": loss_rec, "discriminator": loss_d, "generator": loss_g}


class SupervisedAAE(AAE):
    """The decoder gets the one-hot class as well as the code, so the code is left to carry the style
    (section 4, figure 6)."""

    def __init__(self, prior: Prior, hidden: Sequence[int] = nets.PAPER_HIDDEN, n_classes: int = 10,
                 recipe: Recipe = COURSE) -> None:
        self.n_classes = self.decoder_extra = checks.count(n_classes, "n_classes", 2)
        super().__init__(prior, hidden, recipe)

    def train_step(self, x: Tensor, classes: Tensor) -> dict[str, Tensor]:
        """One minibatch x (B, 784) with its ``classes`` (B,)."""
        check_classes(classes, self.n_classes, "classes")
        if len(classes) != len(x):
            raise ValueError(f"classes must give one class per image: {len(classes)} classes for {len(x)} images")
        # Phase 1, reconstruction from the code *and* the class.
        x_hat = self.decoder(torch.cat([self.encoder(x), self.one_hot(classes)], 1))
        loss_rec = reconstruction_loss(x_hat, x, self.recipe.reconstruction)
        update(self.opt_ae, loss_rec)

        # Phase 2, regularisation, exactly as in the plain AAE: q(z) -> p(z), a prior that carries no label.
        return {"reconstruction": loss_rec, **self.regularise(x)}

    def one_hot(self, classes: Tensor) -> Tensor:
        return F.one_hot(classes, self.n_classes).float()

    @torch.no_grad()
    def decode(self, z: Tensor, classes: Tensor) -> Tensor:
        """Images from styles (N, z_dim) and classes (N,): (N, 784) in [0, 1]."""
        check_classes(classes, self.n_classes, "classes")
        return torch.sigmoid(self.decoder(torch.cat([z, self.one_hot(classes)], 1)).float())

    @torch.no_grad()
    def generate(self, n: int, classes: Tensor) -> Tensor:
        """n images of the given ``classes`` (n,) in random styles: (n, 784)."""
        return self.decode(self.prior.sample(n), classes)
