"""The GPU self-check runs anywhere in its dry mode: every chapter's step, single and as an ensemble, compared across
two runs; a step that does not reproduce fails it, and the command exits non-zero."""
import json

import pytest
import torch

from aae_tutorial import gpu_check, priors, recipes
from aae_tutorial.aae import AAE


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    return gpu_check.run(dry=True, out=out), out


def test_the_dry_check_covers_every_chapter_single_and_as_an_ensemble(dry):
    record, out = dry
    assert json.loads(out.read_text()) == record
    assert record["dry"] and record["failures"] == [] and record["fallback_probe"] is None
    chapters = {c for case in record["cases"].values() for c in case["chapters"].split(", ")}
    assert chapters == {str(n) for n in range(1, 9)}
    assert {(case["case"], case["members"]) for case in record["cases"].values()} == {
        (name, m) for name in gpu_check.CASES for m in (1, *gpu_check.MEMBERS)}
    assert all(c["relative_weight_difference"] == 0 and c["step_ms"] > 0 for c in record["cases"].values())


def test_a_step_that_does_not_reproduce_fails_the_check(tmp_path, monkeypatch):
    builds = []

    class Drifting(AAE):
        """Each build trains at a different rate: the second run cannot match the first."""

        def __init__(self, *args) -> None:
            super().__init__(*args)
            builds.append(self)
            self.opt_ae = recipes.adam(self.parameters(), lr=1e-3 * len(builds))

    chapters, _, make_step = gpu_check.CASES["aae"]
    drifting = lambda h, d: Drifting(priors.Gaussian(8, 5.0, device=d), h)  # noqa: E731
    monkeypatch.setattr(gpu_check, "CASES", {"drifting": (chapters, drifting, make_step)})
    record = gpu_check.run(dry=True, out=tmp_path / "check.json")
    assert record["failures"] == ["drifting x1", "drifting x3", "drifting x9"]
    assert "graphed != eager" in record["cases"]["drifting x1"]["problems"][0]
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--dry", "--out", str(tmp_path / "again.json")])
    assert exit_.value.code == 1


def test_the_record_is_named_after_the_device():
    assert gpu_check.gpu_name(torch.device("cpu")) == "cpu"


def test_the_record_reads_as_a_table(dry):
    text = gpu_check.markdown(dry[0])
    assert text.count("| ok |") == len(gpu_check.CASES) * (1 + len(gpu_check.MEMBERS)) and "Fallback probe: not run (no CUDA)" in text


def test_chapter_3s_reseeding_callback_runs_between_the_steps_it_checks(monkeypatch):
    calls = []
    monkeypatch.setattr(gpu_check, "reseed_and_draw", lambda device: calls.append(device))
    result = gpu_check.check_case("aae-reseeded", 1, (16, 16), torch.device("cpu"), gpu_check.Inputs(torch.device("cpu")),
                                  graphs=False, compared=3, timed=1)
    assert result["ok"] and len(calls) == 2 * 3  # after every compared step of the eager and the checked run
    state = torch.random.get_rng_state()
    monkeypatch.undo()
    gpu_check.reseed_and_draw(torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), state)  # the callback leaves training's random state as it was
