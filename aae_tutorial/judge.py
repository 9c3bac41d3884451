"""An independent judge of decoded images: a plain MLP digit classifier trained on real MNIST images only.

It measures whether the content of a decoded image follows the label it was decoded with (paper section 5): decode
many (style, label) pairs and count how often the judge reads the label back.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import metrics, nets
from .recipes import adam
from .steps import update


class DigitClassifier(nets.RecordsInit, nn.Module):
    """x (B, 784) -> logits over the 10 digits; an MLP with one optimiser, trained by cross-entropy."""

    def __init__(self, hidden: Sequence[int] = (512,)) -> None:
        super().__init__()
        self.net = nets.mlp([784, *hidden, 10])
        self.opt = adam(self.net.parameters(), lr=1e-3)

    def train_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        loss = F.cross_entropy(self.net(x), y)
        update(self.opt, loss)
        return {"cross_entropy": loss}

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 10_000) -> Tensor:
        """The most likely digit of each image: (N, 784) -> (N,)."""
        return torch.cat([self.net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def content_follows_label(decode: Callable[[Tensor, Tensor], Tensor], styles: Tensor, judge: DigitClassifier,
                          n_classes: int = 10) -> float:
    """Share (%) of decoded images that the judge reads as the label they were decoded with.

    Every style in ``styles`` (N, z_dim) is decoded with every label 0..n_classes-1 by ``decode(styles, labels)``.
    Chance is 100 / n_classes; a decoder that ignores the label scores near chance.
    """
    labels = torch.arange(n_classes, device=styles.device).repeat(len(styles))  # (N * n_classes,)
    images = decode(styles.repeat_interleave(n_classes, 0), labels)
    return 100.0 - metrics.error_rate(judge.predict(images), labels)
