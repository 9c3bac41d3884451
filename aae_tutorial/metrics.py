"""Evaluation: Parzen-window log-likelihood (paper section 3), a prior-match MMD, and error rates for
classification and clustering (sections 5-6)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@torch.no_grad()
def parzen_log_likelihood(samples: Tensor, x: Tensor, sigma: float | Sequence[float],
                          batch_size: int = 1000) -> Tensor:
    """log p(x) under an isotropic Gaussian kernel density on ``samples`` (Breuleux et al.; paper section 3).

    log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - (d/2) log(2 pi sigma^2), batched on the device;
    the squared distances are computed once per batch and reused for every sigma.
    samples (N, d), x (M, d) -> (M,) log-likelihoods in nats, or (S, M) for S values of sigma.
    """
    sigmas = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)  # (S,)
    if not len(sigmas) or not (torch.isfinite(sigmas) & (sigmas > 0)).all():
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    if samples.ndim != 2 or x.ndim != 2 or samples.shape[1] != x.shape[1]:
        raise ValueError(f"need samples (N, d) and x (M, d), got {tuple(samples.shape)} and {tuple(x.shape)}")
    n, d = samples.shape
    const = math.log(n) + 0.5 * d * torch.log(2 * math.pi * sigmas**2)  # (S,)
    out = []
    for i in range(0, len(x), batch_size):
        sq = torch.cdist(x[i : i + batch_size].float(), samples.float()).square().double()  # (b, N)
        scaled = -sq.unsqueeze(0) / (2 * sigmas.reshape(-1, 1, 1) ** 2)  # (S, b, N)
        out.append(torch.logsumexp(scaled, dim=2) - const.unsqueeze(1))  # (S, b)
    ll = torch.cat(out, dim=1)
    return ll[0] if isinstance(sigma, (int, float)) else ll


def select_sigma(samples: Tensor, x_valid: Tensor, sigmas: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The kernel width with the best mean validation log-likelihood, and the score of every candidate."""
    means = parzen_log_likelihood(samples, x_valid, list(sigmas)).mean(1).tolist()
    scores = {float(s): m for s, m in zip(sigmas, means)}
    return max(scores, key=scores.get), scores


@torch.no_grad()
def mmd(a: Tensor, b: Tensor, bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0)) -> float:
    """Unbiased squared maximum mean discrepancy between samples a (n, d) and b (m, d), RBF kernels summed.

    Zero in expectation when both come from the same distribution; larger means a worse match.
    """
    def k(u: Tensor, v: Tensor) -> Tensor:
        sq = torch.cdist(u.double(), v.double()).square()
        return sum(torch.exp(-sq / (2 * h**2)) for h in bandwidths)

    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    term_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    term_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return (term_a + term_b - 2 * k(a, b).mean()).item()


def prior_match_tracker(encode: Callable[[Tensor], Tensor], sample_prior: Callable[[int], Tensor],
                        x: Tensor, n: int = 2000) -> Callable[[int], dict[str, float]]:
    """A per-epoch callback for :func:`aae_tutorial.train.fit` that logs ``mmd``, the MMD² between the codes of the
    first ``n`` images of ``x`` and ``n`` prior samples. The prior samples are drawn from a fixed seed under
    ``torch.random.fork_rng``, so every epoch is scored against the same draw and training's random stream is
    untouched."""
    def on_epoch_end(epoch: int) -> dict[str, float]:
        with torch.random.fork_rng():
            torch.manual_seed(12345)
            return {"mmd": mmd(encode(x[:n]), sample_prior(n))}

    return on_epoch_end


def error_rate(pred: Tensor, y: Tensor) -> float:
    """Fraction of wrong predictions, in percent."""
    if pred.shape != y.shape or not len(y):
        raise ValueError(f"need predictions and labels of one non-empty shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    return 100.0 * (pred != y).float().mean().item()


def paper_cluster_labels(proba_valid: Tensor, y_valid: Tensor) -> Tensor:
    """The paper's rule for naming clusters (section 6): cluster i takes the label of the validation image x_n that
    maximises q(y_i | x_n). proba_valid (N, n_clusters), y_valid (N,) -> the label of each cluster (n_clusters,)."""
    if proba_valid.ndim != 2 or y_valid.shape != proba_valid.shape[:1]:
        raise ValueError(f"need proba_valid (N, n_clusters) and y_valid (N,), got {tuple(proba_valid.shape)} "
                         f"and {tuple(y_valid.shape)}")
    return y_valid[proba_valid.argmax(0)]


def majority_cluster_labels(clusters: Tensor, y: Tensor, n_clusters: int, n_classes: int = 10) -> Tensor:
    """A second view: each cluster takes the majority label of the images assigned to it (an empty cluster maps to
    label 0). clusters (N,), y (N,) -> (n_clusters,)"""
    counts = torch.zeros(n_clusters, n_classes, dtype=torch.long, device=y.device)
    counts.index_put_((clusters, y), torch.ones_like(y), accumulate=True)
    return counts.argmax(1)


def clusters_used(clusters: Tensor, n_clusters: int, min_share: float = 0.005) -> int:
    """How many of the ``n_clusters`` categories receive at least ``min_share`` of the images."""
    share = clusters.bincount(minlength=n_clusters).float() / len(clusters)
    return int((share >= min_share).sum())


def hungarian_accuracy(clusters: Tensor, y: Tensor, n_clusters: int | None = None, n_classes: int = 10) -> float:
    """Accuracy (%) under the best one-to-one matching of clusters to labels (as in DEC and GMVAE)."""
    clusters, y = clusters.cpu().numpy(), y.cpu().numpy()
    n_clusters = n_clusters or int(clusters.max()) + 1
    counts = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(counts, (clusters, y), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return 100.0 * counts[rows, cols].sum() / len(y)


def confusion_matrix(pred: Tensor, y: Tensor, n_classes: int = 10) -> np.ndarray:
    """Counts (true class, predicted class) -> (n_classes, n_classes)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y.cpu().numpy(), pred.cpu().numpy()), 1)
    return m
