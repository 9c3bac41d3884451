"""The test session's parallel plan (``conftest``): workers by thread count, and the groups a worker runs in order."""
import os
from types import SimpleNamespace

import pytest

import conftest


@pytest.mark.parametrize("cores, threads, workers, passive", [
    (2, "1", 2, False),  # CI at 1 thread: both cores busy, each worker at the thread count asked for
    (2, "2", 2, True),  # at 2 threads: each worker trains at 2 threads, waiting threads sleep (4 threads, 2 cores)
    (2, "", 2, False),  # unset: a worker per core, each at 1 thread
    (16, "", 4, False),  # at most 4
    (1, "", 0, False),
    (8, "2", 4, False),
    (1, "1", 0, False),
])
def test_workers_fill_the_cores_at_the_thread_count_asked_for(monkeypatch, cores, threads, workers, passive):
    monkeypatch.setattr(conftest.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that monkeypatch restores what the hook sets
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert conftest.pytest_xdist_auto_num_workers(None) == workers
    assert os.environ["OMP_NUM_THREADS"] == (threads or ("1" if workers else ""))  # what the workers inherit
    assert os.environ.get("OMP_WAIT_POLICY") == ("PASSIVE" if passive else None)


def test_a_claim_on_fresh_records_runs_with_its_chapters_notebook_and_others_with_their_module():
    group = conftest.worker_group
    assert group("book/06_semisupervised.ipynb::Cell 3") == "06_semisupervised"
    assert group("tests/test_claims.py::test_ch6_beats_the_baseline[100-fresh]") == "06_semisupervised"
    assert group("tests/test_claims.py::test_ch3_matches[fresh-gaussian]") == "03_aae"
    assert group("tests/test_claims.py::test_ch6_beats_the_baseline[100-committed]") == "tests/test_claims.py"
    assert group("tests/test_run.py::test_a_run_resumes") == "tests/test_run.py"


def test_a_claim_on_fresh_records_that_names_no_chapter_is_refused():
    fresh = SimpleNamespace(nodeid="tests/test_claims.py::test_records_agree[fresh]",
                            get_closest_marker=lambda mark: mark == "fresh_records" or None)
    with pytest.raises(pytest.UsageError, match="test_ch<N>_"):
        conftest.pytest_collection_modifyitems(SimpleNamespace(), [fresh])


def test_the_longest_chapter_is_measured_and_handed_out_first():
    seconds = conftest.chapter_seconds()
    assert set(seconds) >= {p.stem for p in conftest.BOOK.glob("0*.ipynb")}
    assert max(seconds, key=seconds.get) == "03_aae"


@pytest.mark.parametrize("worker, fetched", [(False, 1), (True, 0)])
def test_mnist_is_fetched_once_before_the_workers_start(monkeypatch, capsys, worker, fetched):
    from aae_tutorial import data

    calls = []
    monkeypatch.setattr(data, "ensure_mnist", lambda: calls.append(1))
    conftest.pytest_configure(SimpleNamespace(**({"workerinput": {}} if worker else {})))
    assert len(calls) == fetched

    def unreachable():
        raise data.MNISTUnavailable("no source answered")

    monkeypatch.setattr(data, "ensure_mnist", unreachable)
    conftest.pytest_configure(SimpleNamespace())  # the session goes on: the tests that need MNIST say why
    assert "no source answered" in capsys.readouterr().out
