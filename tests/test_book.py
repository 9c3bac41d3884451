"""The committed book: every notebook listed, executed, error-free, with figures, provenance and a Colab cell."""
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
TRAINING_CHAPTERS = [p for p in NOTEBOOKS if p.name[:2] in {f"0{i}" for i in range(1, 9)}]


def outputs(nb, kind: str) -> list[str]:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream":
                texts.append(out.text)
            elif kind in out.get("data", {}):
                texts.append(out.data[kind])
    return texts


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    listed = set(toc_files())
    assert {f"book/{p.stem}" for p in NOTEBOOKS} <= listed
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), entry


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_executed_with_figures_and_no_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every code cell must be executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], "no error outputs"
    stderr = [o.text[:200] for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"warnings or logs printed into the page: {stderr}"
    assert outputs(nb, "image/png"), "at least one figure"
    assert any("Run mode:" in t for t in outputs(nb, "stream")), "states the mode it ran in"
    assert any("Device:" in t for t in outputs(nb, "stream")), "states the device"


@pytest.mark.parametrize("path", TRAINING_CHAPTERS, ids=lambda p: p.stem)
def test_training_chapters_state_epochs_and_wall_time(path):
    nb = nbformat.read(path, as_version=4)
    summaries = [t for t in outputs(nb, "text/markdown") if "| run | epochs | wall time | weights |" in t]
    assert summaries and "**total**" in summaries[-1]


# the ref the Colab cell installs: the branch the book is built from, which the rocket opens the notebook from too
PINNED = f"aae-tutorial @ git+{CONFIG['repository']['url']}@{CONFIG['repository']['branch']}"


def run_install_cell(source: str, monkeypatch, colab: bool, pip_exit: int = 0) -> list[list[str]]:
    """Execute a notebook's install cell with a fake Colab module and a fake pip; return the pip commands run."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(returncode=pip_exit))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(TransformerManager().transform_cell(source), {})
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_installs_this_books_version_on_colab_only_and_fails_loudly(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert not first.outputs
    assert run_install_cell(first.source, monkeypatch, colab=False) == []  # elsewhere: nothing is installed
    (pip,) = run_install_cell(first.source, monkeypatch, colab=True)
    assert pip[1:5] == ["-m", "pip", "install", "-q"] and pip[-1] == PINNED  # the book's own branch
    with pytest.raises(RuntimeError, match=r"Could not install .* run this cell again"):
        run_install_cell(first.source, monkeypatch, colab=True, pip_exit=1)  # the notebook stops here


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_ask_colab_for_a_gpu(path):
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata.get("accelerator") == "GPU" and metadata.get("colab", {}).get("gpuType")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_has_a_one_line_caption_under_it(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.outputs):
            caption = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
            assert caption is not None and caption.cell_type == "markdown", f"cell {i}: no caption under the figure"
            assert caption.source.startswith("**Figure.** ") and "\n" not in caption.source.strip(), caption.source


#: The longest code line the book's column shows without clipping.
MAX_CODE_LINE = 88


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(path):
    nb = nbformat.read(path, as_version=4)
    long = [f"cell {i}: {line}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for line in c.source.splitlines() if len(line) > MAX_CODE_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_CODE_LINE} characters: {long[:3]}"


#: A learner reads a cell at a glance: every code cell is shorter than this.
MAX_CELL_LINES = 30


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_is_short_enough_to_read_at_a_glance(path):
    nb = nbformat.read(path, as_version=4)
    long = {i: len(c.source.splitlines()) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and len(c.source.splitlines()) >= MAX_CELL_LINES}
    assert not long, f"cells of {MAX_CELL_LINES} lines or more (cell: lines): {long}"


def colab_url(notebook: str) -> str:
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    path = f"{CONFIG['repository']['path_to_book']}/{notebook}".lstrip("/")
    return f"{CONFIG['launch_buttons']['colab_url']}/github/{repo}/blob/{CONFIG['repository']['branch']}/{path}"


@pytest.mark.parametrize("entry", [e for e in toc_files() if (ROOT / f"{e}.ipynb").exists()])
def test_colab_launch_url_resolves_to_a_notebook_in_the_repo(entry):
    url = colab_url(f"{entry}.ipynb")
    path_in_repo = url.split(f"/blob/{CONFIG['repository']['branch']}/", 1)[1]
    assert (ROOT / path_in_repo).is_file()


def test_vendored_assets_are_outside_static_and_licensed():
    assert not (ROOT / "book" / "_static").exists()
    vendor = ROOT / "book" / "_vendor"
    assert (vendor / "mathjax" / "tex-chtml.js").is_file() and (vendor / "mathjax" / "LICENSE").is_file()
    assert (vendor / "html-manager" / "embed.js").is_file()
    assert (vendor / "html-manager" / "embed.js.LICENSE.txt").is_file()


README_TABLE = ("<!-- paper-width results: generated by aae_tutorial.results.paper_width_table; do not edit by hand -->\n",
                "\n<!-- end of paper-width results -->")


def test_the_readme_leads_with_its_two_commands_and_shows_the_paper_width_records_as_they_are():
    from aae_tutorial import results

    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 80
    first = "\n".join(lines[:20])
    assert "bash .ci/setup && .venv/bin/jupyter-book build ." in first and "bash .ci/setup && .venv/bin/pytest" in first
    start, end = README_TABLE
    shown = readme[readme.index(start) + len(start):readme.index(end)]
    made = results.paper_width_table(results.paper_width_records(results.BOOK_RESULTS))
    assert shown == made, "the README's table is not the records': paste this between its markers:\n" + made
