"""Side files fail early and clearly: corrupt or old records are set aside, not fatal; output paths are checked
before any work; course records of concurrent runs are merged, not lost."""
import json
import os

import pytest

from aae_tutorial import course, files, full_course, gpu_check, plan


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"quick": {"01": {"wall_time_s": 3}}}'])
def test_corrupt_or_old_course_times_are_set_aside_with_a_warning(tmp_path, content):
    path = tmp_path / "course_times.json"
    path.write_text(content)
    with pytest.warns(UserWarning, match="set it aside as .*course_times.json.[0-9a-f]{8}.corrupt"):
        assert "not measured yet" in course.expected_time("07_clustering", path)
    assert not path.exists()


def test_an_old_gpu_check_record_is_ignored_by_the_plan(tmp_path):
    (tmp_path / "gpu_check_h200.json").write_text(json.dumps({"device": "cuda (NVIDIA H200)", "steps": [1]}))
    with pytest.warns(UserWarning, match="the gpu_check record"):
        assert plan.newest_gpu_check("H200", tmp_path) is None
    with pytest.raises(ValueError, match="device must name a GPU"):
        plan.newest_gpu_check(" ", tmp_path)


def test_the_plan_refuses_an_empty_device(capsys):
    with pytest.raises(SystemExit):
        full_course.main(["--plan", "--device", ""])
    assert "--device must name a GPU" in capsys.readouterr().err


@pytest.mark.parametrize("out, message", [("", "empty path"), ("{dir}", "is a folder"),
                                          ("{ro}/r.json", "is not writable")])
def test_gpu_check_refuses_its_output_path_before_the_first_check(tmp_path, monkeypatch, capsys, out, message):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root writes anywhere: a read-only folder cannot be made here
        if message == "is not writable":
            pytest.skip("running as root: every folder is writable")
    monkeypatch.setattr(gpu_check, "run", lambda *a: pytest.fail("checks ran before the path was checked"))
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry", "--out", out.format(dir=tmp_path, ro=ro)])
    assert message in capsys.readouterr().err


def test_course_records_of_two_runs_are_merged(tmp_path, monkeypatch):
    book = tmp_path / "book"
    (book / "results").mkdir(parents=True)
    monkeypatch.setattr(full_course, "execute", lambda notebook, stamp: None)
    times = tmp_path / "course_times.json"
    environment = dict(os.environ)
    first = full_course.run(["01_autoencoders"], book, "quick", times)
    assert dict(os.environ) == environment  # the chapters' settings (mode, results folder) do not leak out of it
    # a second run that read the record before the first one wrote it keeps the first one's chapter
    real, reads = full_course._entries, []
    monkeypatch.setattr(full_course, "_entries", lambda path: real(path) if reads.append(path) or len(reads) > 1 else {})
    full_course.run(["02_vae"], book, "quick", times)
    record = json.loads((book / "results" / "quick_course.json").read_text())
    assert [c["chapter"] for c in record["chapters"]] == ["01_autoencoders", "02_vae"]
    assert first["chapters"][0]["chapter"] == "01_autoencoders"


def test_read_json_returns_none_for_a_missing_file(tmp_path):
    assert files.read_json(tmp_path / "none.json", lambda v: True, "x") is None
