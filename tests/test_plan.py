"""The full-mode plan: the runs it projects are the chapters' full-mode runs, its times come from a gpu_check record
of the device when one exists, and it is always labelled a projection."""
import ast
import inspect
import json
from pathlib import Path

import nbformat
import pytest

from aae_tutorial import course, full_course, judge, plan

BOOK = Path(__file__).resolve().parents[1] / "book"


def full_settings(chapter: str) -> dict[str, object]:
    """Every ``name = mode.pick(quick=..., full=VALUE)`` in a notebook's code, as name -> VALUE."""
    found = {}
    for cell in nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4).cells:
        if cell.cell_type != "code" or "pick(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and getattr(
                    node.value.func, "attr", "") == "pick":
                full = next(k.value for k in node.value.keywords if k.arg == "full")
                if isinstance(full, (ast.Constant, ast.List)):
                    found[node.targets[0].id] = ast.literal_eval(full)
    return found


@pytest.mark.parametrize("chapter", list(plan.FULL))
def test_the_plan_trains_what_the_chapter_trains_in_full_mode(chapter):
    settings = full_settings(chapter)
    epochs = {v for k, v in settings.items() if k.startswith("epochs")}
    planned = {e.epochs for e in plan.FULL[chapter] if e.step != "judge"}
    assert planned == epochs, f"{chapter}: the notebook's full-mode epochs are {epochs}, the plan's {planned}"
    seeds = settings.get("seeds", [0])
    multi_seed = [e for e in plan.FULL[chapter] if "seeds" in e.what]
    assert all(e.members % len(seeds) == 0 or "seeds 1, 2" in e.what for e in multi_seed)
    assert bool(multi_seed) == (len(seeds) > 1)


def test_the_judge_is_planned_with_its_full_mode_epochs():
    assert "mode.pick(quick=3, full=20)" in inspect.getsource(judge.digit_judge)
    assert [e.epochs for e in plan.FULL["05_supervised"] if e.step == "judge"] == [20]


def test_every_planned_step_is_a_gpu_check_case():
    from aae_tutorial import gpu_check
    assert {e.step for es in plan.FULL.values() for e in es} <= set(gpu_check.CASES)


def test_without_a_record_the_plan_uses_the_h100_figure_and_says_so(tmp_path):
    p = plan.project("H200", tmp_path)
    steps = sum(e.epochs * e.steps_per_epoch for e in plan.FULL["07_clustering"])
    assert p["chapters"]["07_clustering"]["projected_s"] == round(steps * plan.H100_STEP_MS / 1000)
    assert p["chapters"]["07_clustering"]["model_epochs"] == 4 * 3 * 300
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
    # chapter 8: 3 members (2.0 ms) and 6 members (1 + (2 - 1) * 5 / 2 = 3.5 ms), 300 epochs of 500 steps
    assert p["chapters"]["08_dimensionality_reduction"]["projected_s"] == round(300 * 500 * (2.0 + 3.5) / 1000)
    assert plan.newest_gpu_check("cpu", tmp_path) is None  # a dry run measures nothing


def test_the_plan_command_and_a_full_mode_chapter_print_the_projection(capsys, monkeypatch):
    full_course.main(["--plan"])
    assert "Full mode, planned on H200" in capsys.readouterr().out
    monkeypatch.setenv("AAE_MODE", "full")
    course.start(chapter="07_clustering")
    out = capsys.readouterr().out
    assert "Projected training time in full mode: about 20 min" in out and "This is a projection" in out
    assert "interrupt the kernel" in out
