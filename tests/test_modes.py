"""The book may show full-mode outputs while CI executes it in quick mode: nbval then compares every cell except the
ones tagged as printing the run's configuration, and only for notebooks stamped with another mode."""
import re
from pathlib import Path

import nbformat
import pytest
from conftest import MODE_TAG, compares_output

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = re.compile(r"Run mode:|hidden=|parameters|in_features|epochs=")


def test_only_mode_dependent_cells_of_a_notebook_from_another_mode_go_unchecked():
    full = {"aae_tutorial": {"mode": "full"}}
    assert compares_output({}, [MODE_TAG], "quick")  # unstamped notebooks are quick-mode ones: all compared
    assert not compares_output(full, [MODE_TAG], "quick")
    assert compares_output(full, [], "quick") and compares_output(full, ["nbval-ignore-output"], "quick")
    assert compares_output(full, [MODE_TAG], "full")


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_checked_cell_that_prints_the_configuration_is_tagged(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("aae_tutorial", {}).get("mode", "quick") in {"quick", "full"}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "nbval-ignore-output" in tags:
            continue
        printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
        assert not CONFIGURATION.search(printed) or MODE_TAG in tags, f"{path.name}: untagged {printed[:60]!r}"


def notebook(mode: str, cells: list[tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    """A committed notebook from ``mode``: cells of (source, committed stdout, tags)."""
    nb = nbformat.v4.new_notebook(metadata={"aae_tutorial": {"mode": mode},
                                            "kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for i, (source, printed, tags) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags}, execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
        nb.cells.append(cell)
    return nb


@pytest.mark.notebooks
def test_nbval_runs_a_full_mode_notebook_in_quick_mode_and_still_checks_the_rest(pytester, monkeypatch):
    monkeypatch.setenv("AAE_MODE", "quick")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the conftest's plugins (scratch) live beside it
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    show_mode = "import os\nprint(os.environ['AAE_MODE'])"
    nbformat.write(notebook("full", [(show_mode, "full\n", [MODE_TAG]), ("print(2 + 2)", "4\n", [])]),
                   pytester.path / "good.ipynb")
    nbformat.write(notebook("full", [("print(2 + 2)", "5\n", [])]), pytester.path / "wrong.ipynb")
    nbformat.write(notebook("full", [(show_mode, "full\n", [])]), pytester.path / "untagged.ipynb")
    result = pytester.runpytest_subprocess("--nbval", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=2)
    failed = {line.split("::")[0].removeprefix("FAILED ") for line in result.outlines if line.startswith("FAILED")}
    assert failed == {"wrong.ipynb", "untagged.ipynb"}
