"""Priors p(z) for the adversarial regularisation (paper sections 2-4), each with ``sample(n, labels=None)``.

The adversarial autoencoder only ever *samples* from p(z): unlike the VAE it never needs a closed-form density or KL.
That is why a swiss roll is as easy to impose as a Gaussian. Densities (for the VAE) come from ``torch.distributions``;
samples are drawn with plain ``torch.randn``/``torch.rand`` so that a training step can be captured as a CUDA graph.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch import distributions as D

from . import checks


def capturing(t: Tensor) -> bool:
    """True while ``t``'s device is recording a CUDA graph, or while torch's sync debug mode is set to "error" (the
    engine's check, before capture, that a step reads nothing back): then checks that read values back are skipped."""
    return t.device.type == "cuda" and (torch.cuda.is_current_stream_capturing()
                                         or torch.cuda.get_sync_debug_mode() == 2)


def check_classes(y: Tensor, n_classes: int, what: str) -> None:
    """Refuse a label tensor that is not 1-D integer or has values outside 0..n_classes-1, saying which values it has.
    The range is read back once (one host sync), and not at all while a CUDA graph is being recorded."""
    if y.dtype not in (torch.int64, torch.int32) or y.ndim != 1:
        raise ValueError(f"{what} must be a 1-D integer tensor, got {y.dtype} {tuple(y.shape)}")
    if len(y) and not capturing(y):
        lo, hi = torch.stack(torch.aminmax(y)).tolist()
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{what} must lie in 0..{n_classes - 1}, got values from {lo} to {hi}")


class Prior:
    """Base class: ``dim`` is the code size, ``n_components`` the number of label-addressable parts (0 if none)."""

    dim: int
    n_components: int = 0

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def sample(self, n: int, labels: Tensor | None = None) -> Tensor:
        """``n`` codes of shape (n, dim); with ``labels`` (n,), code i comes from component ``labels[i]``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if labels is not None:
            if not self.n_components:
                raise ValueError(f"{type(self).__name__} has no components, so it cannot be sampled by label")
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            check_classes(labels, self.n_components, "labels")
        return self._sample(n, labels)

    def _sample(self, n: int, labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if isinstance(v, (int, float)))
        return f"{type(self).__name__}({args})"


class Gaussian(Prior):
    """Isotropic N(0, std^2 I) in ``dim`` dimensions (the paper uses std 5 for MNIST)."""

    def __init__(self, dim: int = 2, std: float = 5.0, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.dim, self.std = checks.count(dim, "Gaussian's dim"), checks.positive(std, "Gaussian's std")
        # validate_args=False: the arguments are checked above, and checking each log_prob's input would read a
        # value back to the host inside every training step (no CUDA graph could capture the VAE's step)
        self.dist = D.Independent(D.Normal(torch.zeros(dim, device=self.device), self.std, validate_args=False), 1,
                                  validate_args=False)

    def _sample(self, n: int, labels: Tensor | None) -> Tensor:
        return self.std * torch.randn(n, self.dim, device=self.device)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.dist.log_prob(z)


class Uniform(Prior):
    """Uniform on the cube [-half_width, half_width]^dim."""

    def __init__(self, dim: int = 2, half_width: float = 5.0, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.dim = checks.count(dim, "Uniform's dim")
        self.half_width = checks.positive(half_width, "Uniform's half_width")

    def _sample(self, n: int, labels: Tensor | None) -> Tensor:
        return self.half_width * (2 * torch.rand(n, self.dim, device=self.device) - 1)


class GaussianMixture(Prior):
    """``n_components`` elongated 2-D Gaussians arranged on a circle, like the paper's figures 2 and 4.

    Component ``c`` has its mean at angle ``2*pi*c/n_components`` and radius ``radius``; it is stretched along the
    radius (std ``radial_std``) and thin across it (std ``tangential_std``).
    """

    def __init__(self, n_components: int = 10, radius: float = 4.0, radial_std: float = 1.0,
                 tangential_std: float = 0.25, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.dim, self.n_components = 2, checks.count(n_components, "GaussianMixture's n_components")
        self.radius = checks.positive(radius, "GaussianMixture's radius", zero=True)
        self.radial_std = checks.positive(radial_std, "GaussianMixture's radial_std")
        self.tangential_std = checks.positive(tangential_std, "GaussianMixture's tangential_std")
        angle = torch.arange(n_components, device=self.device) * (2 * math.pi / n_components)
        direction = torch.stack([angle.cos(), angle.sin()], 1)  # (k, 2)
        normal = torch.stack([-angle.sin(), angle.cos()], 1)  # (k, 2)
        self.means = radius * direction  # (k, 2)
        self.axes = torch.stack([direction * radial_std, normal * tangential_std], 2)  # (k, 2, 2): scaled axes
        # validate_args=False, as for the Gaussian: no host read inside a training step
        self.components = D.MultivariateNormal(self.means, scale_tril=torch.linalg.cholesky(self.axes @ self.axes.mT),
                                               validate_args=False)
        weights = D.Categorical(torch.ones(n_components, device=self.device), validate_args=False)
        self.dist = D.MixtureSameFamily(weights, self.components, validate_args=False)

    def _sample(self, n: int, labels: Tensor | None) -> Tensor:
        if labels is None:
            labels = torch.randint(self.n_components, (n,), device=self.device)
        eps = torch.randn(n, 2, 1, device=self.device)
        return self.means[labels] + (self.axes[labels] @ eps).squeeze(2)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.dist.log_prob(z)

    def assign(self, z: Tensor) -> Tensor:
        """The most likely component of each code: (n, 2) -> (n,)."""
        return self.components.log_prob(z.unsqueeze(1)).argmax(1)


class SwissRoll(Prior):
    """A 2-D swiss roll cut into ``n_components`` equal segments along its length (paper figure 4, right).

    A point at arc parameter t in [0, 1] sits at angle ``turns*2*pi*t`` and radius ``radius*t``, plus Gaussian noise.
    Segment ``c`` is t in [c/n_components, (c+1)/n_components).
    """

    def __init__(self, n_components: int = 10, radius: float = 8.0, turns: float = 1.5, noise: float = 0.25,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.dim, self.n_components = 2, checks.count(n_components, "SwissRoll's n_components")
        self.radius, self.turns = checks.positive(radius, "SwissRoll's radius"), checks.positive(turns, "SwissRoll's turns")
        self.noise = checks.positive(noise, "SwissRoll's noise", zero=True)

    def point(self, t: Tensor) -> Tensor:
        """Noise-free point of the roll at parameter t: (n,) -> (n, 2)."""
        angle = 2 * math.pi * self.turns * t
        return self.radius * t.unsqueeze(1) * torch.stack([angle.cos(), angle.sin()], 1)

    def _sample(self, n: int, labels: Tensor | None) -> Tensor:
        u = torch.rand(n, device=self.device)
        t = u if labels is None else (labels.to(u.dtype) + u) / self.n_components
        t = 0.05 + 0.95 * t  # keep clear of the crowded centre
        return self.point(t) + self.noise * torch.randn(n, 2, device=self.device)
