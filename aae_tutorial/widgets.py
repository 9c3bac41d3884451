"""An interactive latent-space explorer for 2-D codes that works live (Jupyter, Colab) and in the static HTML book.

:func:`latent_explorer` returns one object with two renderings of the same explorer:

* live, an ``ipywidgets`` pair of sliders whose changes run the decoder in the kernel;
* static, self-contained HTML: the decoder was run once on an n x n grid of codes, and two range inputs pick an image
  in the browser with a few lines of JavaScript. No kernel, widget manager or network is needed.

Jupyter front ends with a widget manager show the live one; the book (``nb_mime_priority_overrides`` in
``_config.yml``) shows the static one.
"""
from __future__ import annotations

import base64
import html
import io
import json
import uuid
from collections.abc import Callable, Sequence

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


def sharpest(images: Tensor, n: int) -> tuple[int, int]:
    """Slider positions (i, j) of the crispest image of an n x n grid (row-major, top row = largest z2): the one whose
    pixels are most confidently ink or paper. The explorers start there, not at a blurry blend at (0, 0)."""
    k = int((2 * images - 1).abs().mean(1).argmax())
    return k % n, n - 1 - k // n


def _static_html(images: Tensor, values: list[float], title: str, start: tuple[int, int]) -> str:
    """Two range inputs over a precomputed grid of decoded images (row-major, top row = largest z2), at the slider
    positions ``start``."""
    n = len(values)
    uris = [f"data:image/png;base64,{base64.b64encode(_png(im)).decode()}" for im in images]
    uid = f"latent-explorer-{uuid.uuid4().hex[:8]}"
    i, j = start
    return f"""<div class="latent-explorer" id="{uid}" style="display:flex;gap:1.5em;align-items:center">
<div style="font-family:monospace">
<div><b>{html.escape(title)}</b></div>
<label>z1 <input type="range" class="z1" min="0" max="{n - 1}" value="{i}"> <span class="v1"></span></label><br>
<label>z2 <input type="range" class="z2" min="0" max="{n - 1}" value="{j}"> <span class="v2"></span></label>
</div>
<img alt="decoded digit" width="112" height="112" style="image-rendering:pixelated;border:1px solid #ccc">
</div>
<script>
(function () {{
  const root = document.getElementById("{uid}");
  const images = {json.dumps(uris)};
  const values = {json.dumps([f"{v:+.2f}" for v in values])};
  const n = {n};
  const z1 = root.querySelector(".z1"), z2 = root.querySelector(".z2"), img = root.querySelector("img");
  function show() {{
    const i = +z1.value, j = +z2.value;  // image row n-1-j holds z2 = values[j]
    img.src = images[(n - 1 - j) * n + i];
    root.querySelector(".v1").textContent = values[i];
    root.querySelector(".v2").textContent = values[j];
  }}
  z1.addEventListener("input", show);
  z2.addEventListener("input", show);
  show();
}})();
</script>"""


def _live_widget(decode: Callable[[Tensor], Tensor], lim: float, device: torch.device | str, title: str,
                 start: tuple[float, float]) -> tuple[W.VBox, W.FloatSlider, W.FloatSlider, W.Image]:
    """Float sliders, starting at ``start``, whose every change decodes the chosen code in the kernel:
    (widget, z1, z2, image)."""
    z1 = W.FloatSlider(value=start[0], min=-lim, max=lim, step=lim / 50, description="z1")
    z2 = W.FloatSlider(value=start[1], min=-lim, max=lim, step=lim / 50, description="z2")
    image = W.Image(format="png", width=112, height=112)

    def redraw(_=None) -> None:
        with torch.no_grad():
            image.value = _png(decode(torch.tensor([[z1.value, z2.value]], device=device))[0])

    z1.observe(redraw, "value")
    z2.observe(redraw, "value")
    redraw()
    return W.VBox([W.HTML(f"<b>{html.escape(title)}</b>"), W.HBox([W.VBox([z1, z2]), image])]), z1, z2, image


class LatentExplorer:
    """Displays as a live widget where a widget manager runs, and as static HTML everywhere else.

    ``z1``, ``z2`` are the live sliders and ``image`` the decoded digit they show.
    """

    def __init__(self, widget: W.Widget, z1: W.FloatSlider, z2: W.FloatSlider, image: W.Image, static_html: str) -> None:
        self.widget, self.z1, self.z2, self.image, self.static_html = widget, z1, z2, image, static_html

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        return {**bundle, "text/html": self.static_html}


def central(codes: Tensor, values: Sequence[float]) -> tuple[int, int]:
    """Slider positions (i, j) of the grid point nearest the centre of a cloud of 2-D ``codes`` (N, 2): the code
    nearest their coordinate-wise median, so the start lies inside the cloud even where its middle is empty."""
    if not isinstance(codes, Tensor) or codes.ndim != 2 or codes.shape[1] != 2 or not len(codes):
        raise ValueError(f"codes must be a non-empty (N, 2) tensor, got {getattr(codes, 'shape', type(codes))}")
    codes = codes.detach().float().cpu()
    centre = codes[(codes - codes.median(0).values).norm(dim=1).argmin()]
    grid = torch.tensor(values)
    return int((grid - centre[0]).abs().argmin()), int((grid - centre[1]).abs().argmin())


def latent_explorer(decode: Callable[[Tensor], Tensor], lim: float = 3.0, n: int = 11,
                    device: torch.device | str = "cpu", title: str = "",
                    codes: Tensor | None = None) -> LatentExplorer:
    """Sliders over a 2-D code (z1, z2) in [-lim, lim]^2 and the digit ``decode`` draws there, starting at the
    centre of the cloud of ``codes`` (:func:`central`; e.g. the test images' codes) or, without them, at the crispest
    digit of the grid (:func:`sharpest`)."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if lim <= 0:
        raise ValueError(f"lim must be positive, got {lim}")
    with torch.no_grad():
        images = decode(code_grid(lim, n).to(device)).cpu()  # (n*n, 784), top row first
    values = np.linspace(-lim, lim, n).tolist()
    i, j = sharpest(images, n) if codes is None else central(codes, values)
    return LatentExplorer(*_live_widget(decode, lim, device, title, (values[i], values[j])),
                          _static_html(images, values, title, (i, j)))
