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


def test_paper_width_curves_mark_the_picked_epoch_and_the_papers_value():
    from aae_tutorial import plots

    rec = {"experiment": "semisupervised_1000_labels", "valid_curves": [[5.0, 4.0, 4.5]], "selected_epochs": [2],
           "paper": 1.6, "precision": "bf16", "epochs": 3, "hidden": [1000, 1000],
           "metric": "test error (%), 1000 labels"}
    fig = plots.validation_curves([rec, {**rec, "paper": None}], ncols=3)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2 and not fig.axes[2].get_visible()
    curve, ring = panels[0].lines[:2]
    assert list(curve.get_ydata()) == [5.0, 4.0, 4.5] and (ring.get_xdata()[0], ring.get_ydata()[0]) == (2, 4.0)
    assert [line.get_ydata()[0] for line in panels[0].lines[2:]] == [1.6] and len(panels[1].lines) == 2
    assert panels[0].get_ylabel() == "validation error (%)"
    plt.close(fig)
