"""Figures: image grids, latent scatters coloured by digit, manifold traversals and loss curves (matplotlib, PNG)."""
from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.ndimage import gaussian_filter
from torch import Tensor
from torchvision.utils import make_grid

from .history import History
from .results import readable

DIGIT_COLORS = plt.get_cmap("tab10")
#: Where a scatter's legend goes: centred below the axes, clear of the tick labels and the axis label, off the data.
BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0), "borderaxespad": 3.8, "frameon": False}


def image_grid(images: Tensor, nrow: int = 10, ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Show (N, 784) or (N, 1, 28, 28) images in [0, 1] as one grid with ``nrow`` images per row."""
    images = images.detach().float().cpu().reshape(-1, 1, 28, 28)
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=0.0)[0]
    if ax is None:
        rows = int(np.ceil(len(images) / nrow))
        _, ax = plt.subplots(figsize=(0.45 * nrow, 0.45 * rows + (0.3 if title else 0)))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(z: Tensor, labels: Tensor, ax: plt.Axes | None = None, prior_samples: Tensor | None = None,
                   title: str = "", s: float = 2.0, xlabel: str = "$z_1$", ylabel: str = "$z_2$",
                   square: float | None = None) -> plt.Axes:
    """2-D codes coloured by digit (colour bar: the digit). With ``prior_samples``, the region the prior covers is
    drawn on top in thin black lines, a colour no digit uses (:func:`prior_outline`); with ``square``, a uniform
    prior's support [-square, square]² is drawn as its square instead."""
    if z.shape[1] != 2:
        raise ValueError(f"latent_scatter draws 2-D codes, got shape {tuple(z.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    z, labels = z.detach().cpu(), labels.detach().cpu()
    sc = ax.scatter(z[:, 0], z[:, 1], s=s, c=labels, cmap=DIGIT_COLORS, vmin=-0.5, vmax=9.5, rasterized=True)
    if square is not None:
        ax.add_patch(plt.Rectangle((-square, -square), 2 * square, 2 * square, fill=False, color="black", lw=0.9))
        ax.legend(handles=[Line2D([], [], color="black", lw=0.9, label="the prior's support")], **BELOW)
    elif prior_samples is not None:
        prior_outline(prior_samples, ax)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    plt.colorbar(sc, ax=ax, ticks=range(10), fraction=0.046, pad=0.04)
    return ax


def prior_outline(samples: Tensor, ax: plt.Axes, bins: int = 60) -> None:
    """Thin black contours around the densest regions of 2-D prior ``samples`` holding 50 % (solid) and 95 %
    (dashed) of them, from a smoothed histogram; a legend below the axes, off the data, names the two lines."""
    p = samples.detach().float().cpu().numpy()
    hist, xe, ye = np.histogram2d(p[:, 0], p[:, 1], bins=bins)
    hist = gaussian_filter(hist, 1.5)
    mass = np.sort(hist.ravel())[::-1]
    cumulative = np.cumsum(mass) / mass.sum()
    t95, t50 = (mass[min(np.searchsorted(cumulative, q), len(mass) - 1)] for q in (0.95, 0.5))
    centres = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    ax.contour(*centres, hist.T, levels=sorted({t95, t50}), colors="black", linewidths=0.9,
               linestyles=["dashed", "solid"][-len({t95, t50}):])
    ax.legend(handles=[Line2D([], [], color="black", lw=0.9, ls=ls, label=f"prior, {q} of samples")
                       for ls, q in (("solid", "50 %"), ("dashed", "95 %"))], ncols=2, title="contours", **BELOW)


def code_grid(lim: float | tuple[float, float, float, float], n: int = 15) -> Tensor:
    """An n x n grid of 2-D codes spanning ``lim`` (half-width, or (xmin, xmax, ymin, ymax)), top row first. -> (n*n, 2)"""
    xmin, xmax, ymin, ymax = (-lim, lim, -lim, lim) if np.isscalar(lim) else lim
    ys, xs = torch.meshgrid(torch.linspace(ymax, ymin, n), torch.linspace(xmin, xmax, n), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], 1)


def manifold(decode: Callable[[Tensor], Tensor], lim: float | tuple[float, float, float, float], n: int = 15,
             device: torch.device | str = "cpu", ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """The decoder applied to a grid of 2-D codes: how the model fills the latent space."""
    with torch.no_grad():
        images = decode(code_grid(lim, n).to(device))
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    return image_grid(images, nrow=n, ax=ax, title=title)


def epoch_axis(ax: plt.Axes, label: str = "epoch") -> plt.Axes:
    """Label the x axis as epochs, with whole-number ticks only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)
    return ax


def loss_curves(history: History, ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Per-epoch mean of each loss of a run; a log axis when the losses differ in size by more than 20 times, so
    that the small ones do not look flat."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    epochs = np.arange(1, history.epochs + 1)
    for name, values in history.losses.items():
        ax.plot(epochs, values, marker="o", ms=3, label=name)
    values = np.concatenate([np.asarray(v, dtype=float) for v in history.losses.values()])
    log = len(values) and (values > 0).all() and values.max() > 20 * values.min()
    if log:
        ax.set_yscale("log")
    epoch_axis(ax)
    ax.set_ylabel("mean loss per epoch" + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.legend()
    return ax


def validation_curves(records: list[dict], ncols: int = 2) -> plt.Figure:
    """One panel per paper-width record (``python -m aae_tutorial.run NAME --scale full``): each seed's validation
    curve, the epoch validation picked (a ring) and, where the paper gives one, its test value (dashed), so that a
    run which misses the paper shows how it got there."""
    nrows = max(1, -(-len(records) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), layout="constrained", squeeze=False)
    for ax, rec in zip(axes.flat, records):
        for curve, picked in zip(rec["valid_curves"], rec["selected_epochs"]):
            ax.plot(range(1, len(curve) + 1), curve, lw=1.2)
            ax.plot(picked, curve[picked - 1], "o", mfc="none", ms=9, color=ax.lines[-1].get_color())
        if rec.get("paper") is not None:
            ax.axhline(rec["paper"], ls="--", color="k", lw=1, label="the paper (test)")
            ax.legend(loc="best", fontsize=9)
        how = f"width {rec['hidden'][0]}, {rec['precision']}, {rec['epochs']} ep"
        ax.set_title(f"{readable(rec['experiment'])}\n({how})", fontsize=10)
        ax.set_ylabel(rec["metric"].replace("test ", "validation ").split(",")[0], fontsize=9)
        epoch_axis(ax)
    for ax in list(axes.flat)[len(records):]:
        ax.set_visible(False)
    return fig
