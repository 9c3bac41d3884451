"""The full-mode plan: the runs it projects are the chapters' full-mode runs, its times come from a gpu_check record
of the device when one exists, and it is always labelled a projection."""
import json
from pathlib import Path

import pytest
import torch

from aae_tutorial import course, experiments, full_course, kinds, plan

BOOK = Path(__file__).resolve().parents[1] / "book"


def test_the_plan_is_the_catalogue_at_full_scale():
    for chapter, ensembles in plan.FULL.items():
        exps = [e for e in experiments.CATALOGUE.values() if e.chapter == chapter]
        assert [e.title for e in exps] == [x.what for x in ensembles]
        assert sum(x.model_epochs for x in ensembles) == sum(e.full.model_epochs for e in exps)
        assert [x.steps_per_epoch for x in ensembles] == [e.steps_per_epoch for e in exps]
    assert "digit judge" in " ".join(x.what for x in plan.FULL["05_supervised"])


def test_the_judge_trains_at_the_catalogues_epochs(monkeypatch):
    calls = []
    monkeypatch.setattr(kinds, "fit", lambda name, model, step, data, epochs, *a, **k: calls.append(epochs) or None)
    monkeypatch.setattr(kinds.metrics, "error_rate", lambda *a: 0.0)
    mnist = type("M", (), {"split": lambda self: ((torch.rand(200, 784), torch.zeros(200, dtype=torch.long)),) * 2,
                           "x_test": torch.rand(10, 784), "y_test": torch.zeros(10, dtype=torch.long)})()
    for name in ("quick", "full"):
        kinds.digit_judge(mnist, experiments.RunMode(name, "test"), "cpu")
    assert calls == [experiments.get("digit_judge").quick.epochs, experiments.get("digit_judge").full.epochs]


def test_every_planned_step_is_a_gpu_check_case():
    from aae_tutorial import gpu_check
    assert {e.step for es in plan.FULL.values() for e in es} <= set(gpu_check.CASES)


def test_without_a_record_the_plan_uses_the_h100_figure_and_says_so(tmp_path):
    p = plan.project("H200", tmp_path)
    steps = sum(e.epochs * e.steps_per_epoch for e in plan.FULL["07_clustering"])
    assert p["chapters"]["07_clustering"]["projected_s"] == round(steps * plan.H100_STEP_MS / 1000)
    assert p["chapters"]["07_clustering"]["model_epochs"] == sum(
        e.full.model_epochs for e in experiments.CATALOGUE.values() if e.chapter == "07_clustering")
    text = plan.markdown(p)
    assert "A projection, not a measurement" in text and "no gpu_check record for H200" in text
    assert "over 15 min" in text  # the targets are not met at these epochs, and the table says so


def test_a_gpu_check_record_of_the_device_sets_the_step_times(tmp_path):
    cases = {f"{name} x{m}": {"case": name, "members": m, "step_ms": 1.0 if m == 1 else 2.0}
             for name in {e.step for es in plan.FULL.values() for e in es} for m in (1, 3)}
    record = {"device": "cuda (NVIDIA H200)", "date": "2026-12-04", "dry": False, "cases": cases}
    (tmp_path / "gpu_check_nvidia-h200.json").write_text(json.dumps(record))
    (tmp_path / "gpu_check_cpu.json").write_text(json.dumps({**record, "device": "cpu", "dry": True}))
    p = plan.project("H200", tmp_path)
    assert "measured by gpu_check on cuda (NVIDIA H200)" in p["source"]
    # chapter 8: three ensembles of 3 members (2.0 ms a step each), 100 epochs of 500 steps
    assert p["chapters"]["08_dimensionality_reduction"]["projected_s"] == round(3 * 100 * 500 * 2.0 / 1000)
    assert plan.newest_gpu_check("cpu", tmp_path) is None  # a dry run measures nothing


def test_the_plan_command_and_a_full_mode_chapter_print_the_projection(capsys, monkeypatch):
    full_course.main(["--plan"])
    assert "Full mode, planned on H200" in capsys.readouterr().out
    monkeypatch.setenv("AAE_MODE", "full")
    course.start(chapter="07_clustering")
    out = capsys.readouterr().out
    assert "Projected training time in full mode: about 6 min" in out and "This is a projection" in out
    assert "interrupt the kernel" in out


def test_a_plan_over_the_loan_target_is_split_into_loans_of_at_most_8_min(tmp_path):
    p = plan.project("H200", tmp_path)
    assert not p["total_within_target"] and p["loans"]
    assert all(loan["projected_s"] <= plan.CHAPTER_TARGET_S or loan["over"] for loan in p["loans"])
    covered = [i for loan in p["loans"] for i in loan["items"]]
    chapters = [c for c in covered if c in plan.FULL]
    names = {e.name for e in experiments.CATALOGUE.values() if e.chapter not in chapters}
    assert sorted(c for c in covered if c not in plan.FULL) == sorted(names)  # every experiment once
    assert sum(loan["projected_s"] for loan in p["loans"]) == pytest.approx(p["total_projected_s"], abs=len(covered))
    assert "The book in loans of at most 8 min on H200" in plan.markdown(p)


def test_step_times_come_from_the_nearest_measured_ensemble_sizes():
    check = {"cases": {f"c x{m}": {"case": "c", "members": m, "step_ms": t} for m, t in ((1, 1.0), (3, 2.0), (9, 5.0))}}
    assert [plan.step_ms(plan.Ensemble("x", "c", m, 1, 1), check) for m in (1, 2, 3, 6, 9, 12)] == [
        1.0, 1.5, 2.0, 3.5, 5.0, 6.5]


def test_a_gpu_check_record_from_before_a_step_existed_names_the_remedy():
    old = {"device": "NVIDIA H200", "date": "2026-11-01",
           "cases": {f"aae x{m}": {"case": "aae", "members": m, "step_ms": 1.0} for m in (1, 3)}}
    with pytest.raises(ValueError, match=r"H200 \(2026-11-01\) has no step times for the 'judge' step.*gpu_check"):
        plan.step_ms(plan.Ensemble("the digit judge", "judge", 1, 20, 500), old)
