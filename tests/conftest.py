"""Test setup.

* Quick mode unless AAE_MODE is set explicitly, so a CUDA machine never trains at paper scale by surprise.
* MNIST is fetched once, before the workers start, where the machine does not have it yet.
* Nothing the tests do changes a tracked file (the plugin ``scratch``): notebooks executed by nbval write their
  records to a scratch folder, not into book/results, and the session fails if ``git status`` changed.
* The claim tests marked ``fresh_records`` read the records this session's notebooks made, so they run last, and
  after their chapter's notebook (a test named ``test_ch<N>_...`` checks chapter N).
* Tests run in parallel (``-n auto``): one pytest-xdist worker per core, at most 4, each training at the
  ``OMP_NUM_THREADS`` asked for (unset: 1). Where the workers' threads outnumber the cores (2 workers at 2 threads on
  2 cores), waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``): a spinning OpenMP thread beside a busy core makes
  training ~20x slower. A notebook and the claims about its records stay together in one worker, in order; a test
  module stays in one worker, so its fixtures are made once.
* The committed book may hold full-mode outputs (``python -m aae_tutorial.full_course`` stamps the mode into each
  notebook's metadata). nbval then still executes every cell in the test's mode, and still compares every cell's
  output, except cells tagged ``output-depends-on-mode`` (the printed configuration: run mode, device, network
  sizes, epochs; and random numbers drawn on the device), whose committed output comes from the other mode.
"""
import json
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("AAE_MODE", "quick")

pytest_plugins = ["pytester", "scratch"]
MODE_TAG = "output-depends-on-mode"


def notebook_mode(metadata: dict) -> str:
    """The mode a committed notebook was executed in: stamped by full_course; quick where no stamp exists."""
    return metadata.get("aae_tutorial", {}).get("mode", "quick")


def compares_output(notebook_metadata: dict, cell_tags: list[str], run_mode: str) -> bool:
    """Whether nbval compares a cell's fresh output with the committed one: not for a mode-dependent cell of a
    notebook committed from another mode."""
    return MODE_TAG not in cell_tags or notebook_mode(notebook_metadata) == run_mode


BOOK = Path(__file__).resolve().parents[1] / "book"


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: the torch floor runs without it
def pytest_xdist_auto_num_workers(config) -> int:
    """How many workers ``-n auto`` starts: one per core, up to :data:`MAX_WORKERS` (none where that is one: a
    single process). Each trains at the ``OMP_NUM_THREADS`` asked for; unset, the variable is set to 1 for the
    workers (and the notebooks' kernels they start). Where the workers' threads outnumber the cores, their waiting
    threads sleep (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning on a core the other worker needs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cores, MAX_WORKERS)
    if workers < 2:
        return 0
    if not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = "1"
    if workers * int(os.environ["OMP_NUM_THREADS"]) > cores:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return workers


def pytest_configure(config) -> None:
    """Fetch MNIST once, before any worker or notebook starts (not in a worker): on a machine without it, every
    notebook that fetched it would print where from, an output its committed cell does not have. Where it cannot be
    fetched, the tests that need it say why."""
    if hasattr(config, "workerinput"):
        return
    from aae_tutorial import data

    try:
        data.ensure_mnist()
    except data.MNISTUnavailable as e:
        print(f"MNIST is not available, so the tests that read it will fail: {e}")


#: Past this, more workers find few notebooks left to share: the longest chapter alone takes about a quarter.
MAX_WORKERS = 4


FRESH_CLAIM = re.compile(r"::test_ch(\d+)_\w*\[(.*-)?fresh(-.*)?\]$")  # made's "fresh" parameter, on chapter N


def worker_group(nodeid: str) -> str:
    """The tests one worker runs together, in order: a notebook's cells, with the claims on the fresh records of its
    chapter after them; else a test module's tests. (pytest-xdist's own ``loadgroup`` reads no marks on pytest 9.)"""
    path = nodeid.split("::", 1)[0]
    if path.startswith("book/"):
        return Path(path).stem
    if chapter := FRESH_CLAIM.search(nodeid):
        return next(p.stem for p in sorted(BOOK.glob(f"{int(chapter[1]):02d}_*.ipynb")))
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Hand out :func:`worker_group` s, in the order collected (the longest chapter first: see below)."""
    from xdist.scheduler import LoadScopeScheduling

    class ChapterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    config.option.loadscopereorder = False
    return ChapterScheduling(config, log)


def chapter_seconds() -> dict[str, float]:
    """Each notebook's measured cold wall time (``full_course``'s record), to start the longest first."""
    course = json.loads((BOOK / "results" / "quick_course.json").read_text())
    return {c["chapter"]: c["wall_time_s"] for c in course["chapters"]}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("fresh_records") is not None)  # stable: else in order
    for item in items:
        if item.get_closest_marker("fresh_records") and not FRESH_CLAIM.search(item.nodeid):
            raise pytest.UsageError(f"{item.nodeid}: a test of fresh records is named test_ch<N>_..., for the one "
                                    f"chapter whose notebook makes the records it reads")
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the longest notebooks first, then the rest
        seconds = chapter_seconds()
        items.sort(key=lambda item: -seconds.get(worker_group(item.nodeid), -1.0))
    for item in items:
        nb = getattr(item.parent, "nb", None)
        if nb is None or not hasattr(item, "cell"):
            continue
        if not compares_output(nb.metadata, item.cell.metadata.get("tags", []), os.environ["AAE_MODE"]):
            item.options["check"] = False
