"""A pytest plugin: running the tests never changes a tracked file.

* Every record a test or an executed notebook writes goes to a scratch results folder (``AAE_RESULTS_DIR``: a new
  temporary folder, removed at the end, or ``AAE_TEST_RESULTS`` where that names one to keep, e.g. to compare two
  runs' fresh records), never into ``book/results/``; the notebooks
  still read the committed records of the chapters not run in this session (:func:`aae_tutorial.results.roots`).
  pytest-xdist's workers share the folder of the process that started them (``AAE_TEST_SCRATCH``), which removes it.
* At the end of the session, the repository's ``git status`` must be what it was at the start: a file the tests
  created, changed or deleted fails the run, and is named.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

OWNED = not os.environ.get("AAE_TEST_SCRATCH")  # else a worker of the session that made (and removes) the folder
KEEP = bool(os.environ.get("AAE_TEST_RESULTS")) or not OWNED  # the folder outlives this process
SCRATCH = os.environ["AAE_RESULTS_DIR"] = os.environ["AAE_TEST_SCRATCH"] = (
    os.environ.get("AAE_TEST_SCRATCH") or os.environ.get("AAE_TEST_RESULTS") or tempfile.mkdtemp(prefix="aae-results-"))


def tree_state(root: Path) -> dict[str, str] | None:
    """Each path ``git status`` lists under ``root`` (changed, new or deleted, ignored files left out), with a hash
    of its bytes; ``None`` where ``root`` is not a git work tree (a source archive: nothing to compare)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "-z", "--untracked-files=all"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    state = {}
    for entry in filter(None, out.split("\0")):
        path = root / entry[3:]
        state[entry[3:]] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else entry[:2]
    return state


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The paths whose status or bytes differ between two :func:`tree_state` readings."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = tree_state(session.config.rootpath)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not KEEP:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    before = session.config.stash.get(_BEFORE, None)
    after = tree_state(session.config.rootpath)
    if before is None or after is None or not (paths := changed(before, after)):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("the tests changed the repository's tracked tree (a test must write into a temporary folder, and a "
               "notebook's records go to AAE_RESULTS_DIR): " + ", ".join(paths))
    if reporter is not None:
        reporter.write_line(f"FAILED {message}", red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[dict]()
