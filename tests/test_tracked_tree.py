"""Running the tests never changes a tracked file: the ``scratch`` plugin sends a notebook's records to a scratch
folder and fails the session when ``git status`` changed. Both are tried here on a small repository of their own."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import scratch

pytestmark = pytest.mark.notebooks  # executes a notebook: not in the torch-floor run

TESTS = Path(__file__).resolve().parent
#: What a chapter does with its result: ``results.record`` into the results folder's ``quick/`` (``results/`` beside
#: the notebook unless AAE_RESULTS_DIR says otherwise), then finds it there.
CHAPTER = """
from aae_tutorial import history, recipes, results
run = history.Run("tiny", {}, history.History(), "quick", "cpu", 1, 0.1, recipe=recipes.COURSE)
results.record("tiny_experiment", "error (%)", [1.0], seeds=[0], runs=[run])
assert [p.parent for p in results.paths("quick/tiny_experiment.json")] == [results.results_dir() / "quick"]
"""


def repository(root: Path, test: str = "") -> Path:
    """A git repository like this one: a committed ``book/results`` record, a chapter, and the scratch plugin."""
    (root / "book" / "results").mkdir(parents=True)
    (root / "book" / "results" / "committed.json").write_text('{"value": 1}\n')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CHAPTER)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "book" / "chapter.ipynb")
    (root / "conftest.py").write_text('pytest_plugins = ["scratch"]\n')
    (root / "test_it.py").write_text(test or "def test_nothing():\n    pass\n")
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=root, check=True)
    return root


def run_pytest(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("AAE_RESULTS_DIR")  # what a fresh session sees: the plugin makes the scratch folder itself
    env.pop("AAE_TEST_RESULTS", None)
    env.pop("AAE_TEST_SCRATCH", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_notebook_under_test_writes_its_record_to_scratch_and_leaves_the_tracked_tree_unchanged(tmp_path):
    root = repository(tmp_path / "repo")
    done = run_pytest(root, "--nbval-lax", "book/chapter.ipynb")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (root / "book" / "results").iterdir()) == ["committed.json"]
    assert scratch.tree_state(root) == {}
    shown = nbformat.read(root / "book" / "chapter.ipynb", as_version=4)  # nbval never writes the notebook back
    assert shown.cells[0].outputs == []


def test_a_test_that_writes_into_book_results_fails_the_run_and_is_named(tmp_path):
    writes = ("from pathlib import Path\n\ndef test_writes():\n"
              "    Path('book/results/committed.json').write_text('{\"value\": 2}')\n"
              "    Path('book/results/new.json').write_text('{}')\n")
    root = repository(tmp_path / "repo", writes)
    done = run_pytest(root, "test_it.py")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout  # the test itself passed: the session's check failed it
    assert "changed the repository's tracked tree" in done.stdout
    assert "book/results/committed.json, book/results/new.json" in done.stdout


def test_the_tree_state_sees_changed_new_and_deleted_files_and_their_bytes(tmp_path):
    root = repository(tmp_path / "repo")
    before = scratch.tree_state(root)
    (root / "book" / "results" / "committed.json").write_text('{"value": 3}\n')
    (root / "test_it.py").unlink()
    middle = scratch.tree_state(root)
    assert scratch.changed(before, middle) == ["book/results/committed.json", "test_it.py"]
    (root / "book" / "results" / "committed.json").write_text('{"value": 4}\n')  # changed again: other bytes
    assert scratch.changed(middle, scratch.tree_state(root)) == ["book/results/committed.json"]
    (tmp_path / "not-a-repo").mkdir()
    assert scratch.tree_state(tmp_path / "not-a-repo") is None
