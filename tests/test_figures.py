"""Figure PNGs record their smallest text, and the readable width follows from it (aae_tutorial.figures)."""
import base64
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from aae_tutorial import figures  # noqa: E402


def saved(fig, tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(base64.b64decode(figures.png(fig)))
    plt.close(fig)
    return path


@pytest.fixture(autouse=True)
def book_style():
    with plt.rc_context():
        figures.use_book_style()
        yield


def test_the_smallest_visible_text_is_recorded(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("title")
    ax.text(0.5, 0.5, "small", fontsize=7)
    ax.text(0.5, 0.2, "hidden", fontsize=3, visible=False)
    ax.text(0.5, 0.1, " ", fontsize=2)
    assert figures.smallest_type_pt(fig) == 7
    path = saved(fig, tmp_path)
    assert figures.smallest_type_px(path) == pytest.approx(7 * 90 / 72, rel=1e-3)


def test_readable_width_keeps_the_smallest_text_at_nine_pixels(tmp_path):
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([0, 1], [0, 1])  # 11-pt tick labels: 13.75 px at 90 DPI
    path = saved(fig, tmp_path)
    from PIL import Image

    with Image.open(path) as image:
        native = image.width
    width = figures.readable_width(path)
    assert width == math.ceil(native * 9 / 13.75)
    assert width * 13.75 / native >= figures.READABLE_PX


def test_a_figure_without_text_needs_no_floor_and_an_unrecorded_png_is_unknown(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow([[0, 1], [1, 0]])
    ax.set_axis_off()
    path = saved(fig, tmp_path)
    assert figures.smallest_type_px(path) == math.inf and figures.readable_width(path) == 0
    plain = tmp_path / "plain.png"
    fig, ax = plt.subplots()
    fig.savefig(plain)
    plt.close(fig)
    assert figures.smallest_type_px(plain) is None and figures.readable_width(plain) is None
