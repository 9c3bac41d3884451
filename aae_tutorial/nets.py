"""MLP builders for encoders, decoders and discriminators (paper appendix: two hidden layers of 1000 ReLU units)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

from torch import nn

from . import checks

#: The paper's hidden sizes for every network on MNIST.
PAPER_HIDDEN = (1000, 1000)


class RecordsInit:
    """Mixin that keeps the arguments a model was constructed with in ``self.init_args``, as plain data: what a
    checkpoint's key reads of a model (the model itself knows nothing of checkpoints)."""

    init_args: dict

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw) -> None:
            if "init_args" not in self.__dict__:  # the outermost constructor records
                bound = inspect.signature(init).bind(self, *args, **kw)
                bound.apply_defaults()
                self.__dict__["init_args"] = {k: v for k, v in list(bound.arguments.items())[1:]}
            init(self, *args, **kw)

        cls.__init__ = recording_init


def _checked(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least two layer sizes, got {sizes}")
    return [checks.count(s, f"every layer size (of {sizes})") for s in sizes]


def hidden_layers(sizes: Sequence[int], batch_norm: bool = False) -> list[nn.Module]:
    """Linear, then ReLU, between consecutive ``sizes``. With ``batch_norm`` a BatchNorm1d sits between the two, and
    the linear layer has no bias (the norm's own shift replaces it)."""
    sizes = _checked(sizes)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=not batch_norm), nn.BatchNorm1d(b), nn.ReLU()] if batch_norm else [
            nn.Linear(a, b), nn.ReLU()]
    return layers


def mlp(sizes: Sequence[int], batch_norm: bool = False) -> nn.Sequential:
    """Hidden layers (:func:`hidden_layers`) between consecutive ``sizes`` and a linear output.

    Example: ``mlp([784, 1000, 1000, 8])`` maps x (B, 784) to z (B, 8).
    """
    sizes = _checked(sizes)
    return nn.Sequential(*hidden_layers(sizes[:-1], batch_norm) if len(sizes) > 2 else [],
                         nn.Linear(sizes[-2], sizes[-1]))


def encoder(z_dim: int, hidden: Sequence[int] = PAPER_HIDDEN, x_dim: int = 784) -> nn.Sequential:
    """q(z|x): x (B, 784) -> z (B, z_dim), linear output (deterministic encoder, paper section 2)."""
    return mlp([x_dim, *hidden, z_dim])


def decoder(z_dim: int, hidden: Sequence[int] = PAPER_HIDDEN, x_dim: int = 784) -> nn.Sequential:
    """p(x|z): z (B, z_dim) -> pixel logits (B, 784); ``torch.sigmoid`` of the output is the image."""
    return mlp([z_dim, *hidden, x_dim])


def discriminator(in_dim: int, hidden: Sequence[int] = PAPER_HIDDEN) -> nn.Sequential:
    """D(z): code (B, in_dim) -> one logit (B, 1). No batch norm: D must judge each code on its own."""
    return mlp([in_dim, *hidden, 1])


def n_params(*modules: nn.Module) -> int:
    """Number of trainable parameters of the given modules together."""
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)

