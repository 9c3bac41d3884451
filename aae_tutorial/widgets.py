"""An interactive latent-space explorer that works both live (Jupyter, Colab) and in the static HTML book.

The decoder is run once on an n x n grid of 2-D codes. Two sliders pick a grid point, and ``jslink`` ties them to
nested ``Stack`` widgets in the browser, so no Python kernel is needed to move them: the executed notebook's embedded
widget state is enough for the book, where the vendored html-manager renders it offline.
"""
from __future__ import annotations

import io
from collections.abc import Callable

import ipywidgets as W
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .plots import code_grid


def _png(image: Tensor, scale: int = 4) -> bytes:
    """A (784,) image in [0, 1] as PNG bytes, dark ink on white, upscaled ``scale`` times."""
    pixels = (255 * (1 - image.reshape(28, 28).clamp(0, 1))).round().to(torch.uint8).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((28 * scale, 28 * scale), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def latent_explorer(decode: Callable[[Tensor], Tensor], lim: float = 3.0, n: int = 11,
                    device: torch.device | str = "cpu", title: str = "") -> W.VBox:
    """Sliders over a 2-D code (z1, z2) in [-lim, lim]^2 and the digit the decoder draws there."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    codes = code_grid(lim, n)  # (n*n, 2), top row (largest z2) first
    with torch.no_grad():
        images = decode(codes.to(device)).cpu()
    values = [f"{v:+.2f}" for v in np.linspace(-lim, lim, n)]
    z1 = W.SelectionSlider(options=values, value=values[n // 2], description="z1")
    z2 = W.SelectionSlider(options=values, value=values[n // 2], description="z2")
    rows = []
    for r in range(n):  # grid row r holds z2 = values[n - 1 - r]
        cells = [W.Image(value=_png(images[r * n + c]), format="png", width=112, height=112) for c in range(n)]
        row = W.Stack(cells, selected_index=n // 2)
        W.jslink((z1, "index"), (row, "selected_index"))
        rows.append(row)
    column = W.Stack(rows[::-1], selected_index=n // 2)  # reversed so that index i means z2 = values[i]
    W.jslink((z2, "index"), (column, "selected_index"))
    header = [W.HTML(f"<b>{title}</b>")] if title else []
    return W.VBox([*header, W.HBox([W.VBox([z1, z2]), column])])
