"""The book's figure style, and PNGs that say how small their text is.

A reader should never meet figure text under :data:`READABLE_PX` pixels. A PNG alone does not say how large its text
is, so every figure a chapter shows is saved with its smallest font size (in points) in the PNG's metadata, next to
its DPI. From that and the width a page gives the image, the book's extension (``book/_ext``) sets the narrowest
width at which the text stays readable, and the browser tests check the text as rendered.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from IPython import get_ipython
from IPython.core.pylabtools import print_figure
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

#: Matplotlib settings for every chapter: 90-DPI PNGs with 11-pt type, so that a figure up to about 1,000 px wide,
#: scaled to the book's 688-px column, still shows its text at 9 px or more.
STYLE = {"figure.dpi": 90, "savefig.dpi": 90, "font.size": 11, "axes.spines.top": False, "axes.spines.right": False}
#: The smallest text a reader should meet, in CSS pixels as rendered.
READABLE_PX = 9.0
#: The PNG text key that holds a figure's smallest font size, in points.
SMALLEST_TYPE_KEY = "aae-tutorial smallest type (pt)"


def smallest_type_pt(fig: Figure) -> float | None:
    """The smallest font size (points) of any visible, non-empty text in ``fig``; None if it has no text. Draws the
    figure (without rendering) first, since tick labels get their text only when drawn."""
    fig.draw_without_rendering()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=None)


def png(fig: Figure) -> str:
    """The PNG (base64) a notebook shows for ``fig``: cropped to its content, with its smallest type recorded."""
    smallest = smallest_type_pt(fig)
    metadata = {SMALLEST_TYPE_KEY: "none" if smallest is None else f"{smallest:g}"}
    return print_figure(fig, "png", bbox_inches="tight", base64=True, metadata=metadata)


def use_book_style() -> None:
    """Apply :data:`STYLE`, and in a notebook show figures through :func:`png`."""
    plt.rcParams.update(STYLE)
    if (shell := get_ipython()) is not None and hasattr(shell, "display_formatter"):
        # Load the backend now: matplotlib loads it lazily, and the inline backend then installs its own formatters.
        plt.switch_backend(matplotlib.get_backend())
        shell.display_formatter.formatters["image/png"].for_type(Figure, png)


def smallest_type_px(path: Path) -> float | None:
    """The smallest text of the PNG at ``path`` in pixels at its native size, from what :func:`png` recorded:
    infinite for a figure without text, None for a PNG saved some other way."""
    with Image.open(path) as image:
        pt = getattr(image, "text", {}).get(SMALLEST_TYPE_KEY)
        dpi = image.info.get("dpi", (72, 72))[0]
    return None if pt is None else math.inf if pt == "none" else float(pt) * dpi / 72


def readable_width(path: Path) -> int | None:
    """The narrowest width (CSS px) at which the figure at ``path`` still shows its text at :data:`READABLE_PX`."""
    if (px := smallest_type_px(path)) is None:
        return None
    if px == math.inf:
        return 0
    with Image.open(path) as image:
        return -int(-image.width * READABLE_PX // px)  # rounded up
