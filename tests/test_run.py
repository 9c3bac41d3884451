"""The run command: resumable to the bit, records at each scale side by side, a catalogue read at a glance."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aae_tutorial import engine, experiments, gpu_check, kinds, results, run
from aae_tutorial.experiments import Scale

TINY = Scale((16, 16), 2)


def fake_splits(n: int = 600) -> kinds.Splits:
    """Random 'images' with labels: every kind builds and trains on them in a second."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n + 400, 784, generator=g)
    y = torch.arange(n + 400) % 10
    return kinds.Splits(x[:n], y[:n], x[n:n + 200], y[n:n + 200], x[n + 200:], y[n + 200:])


def tiny(name: str, **change) -> experiments.Experiment:
    exp = experiments.get(name)
    settings = {**exp.settings, **change}
    return dataclasses.replace(exp, quick=TINY, settings=settings,
                               labels_per_class=None if exp.labels_per_class is None else 2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AAE_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def final_state(exp, splits, epochs, **kw):
    rec = run.run(exp, "quick", epochs=epochs, device="cpu", splits=splits, progress=False, checkpoint_every=0, **kw)
    ckpt = next((Path(os.environ["AAE_CACHE_DIR"]) / "checkpoints").glob(f"{exp.name}-quick-seed0-*.pt"))
    return rec, torch.load(ckpt, weights_only=True)


@pytest.mark.parametrize("name", ["semisupervised_100_labels", "clustering_k16", "parzen_loglik",
                                  "prior_match_mixture_vae", "semisupervised_100_labels_paper_recipe",
                                  "label_prior_mixture-10k-labels"])
def test_a_run_stopped_after_one_epoch_and_resumed_ends_bit_exact(name, cache, monkeypatch):
    exp, splits = tiny(name), fake_splits()
    whole, whole_ckpt = final_state(exp, splits, 2)
    monkeypatch.setenv("AAE_CACHE_DIR", str(cache / "other"))
    first, _ = final_state(exp, splits, 1)
    assert first["epochs"] == 1
    resumed, resumed_ckpt = final_state(exp, splits, 2)
    assert resumed["epochs"] == 2 and resumed["valid_curves"] == whole["valid_curves"]
    assert resumed["value"] == whole["value"] and resumed["selected_epochs"] == whole["selected_epochs"]
    for part in (lambda c: c["model"], lambda c: c["meta"]["best"]["weights"]):
        for k, v in part(whole_ckpt).items():
            assert torch.equal(v, part(resumed_ckpt)[k]), k
    assert torch.equal(whole_ckpt["meta"]["resume"]["rng"], resumed_ckpt["meta"]["resume"]["rng"])


KILLED = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_run import fake_splits, tiny
from aae_tutorial import run
run.run(tiny("semisupervised_100_labels"), "quick", epochs={epochs}, device="cpu", splits=fake_splits(6000),
        progress=False, checkpoint_every=0)
"""


def test_a_run_killed_mid_training_with_sigkill_resumes_to_the_same_end(cache):
    script = KILLED.format(tests=str(Path(__file__).parent), epochs=4)
    env = {**os.environ, "AAE_CACHE_DIR": str(cache / "killed")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # the run prints a line per epoch, after its checkpoint
        if "epoch 1/4" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    runs = cache / "killed" / "checkpoints"
    assert torch.load(next(runs.glob("*.pt")), weights_only=True)["meta"]["history"]["epochs"] in (1, 2)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    env["AAE_CACHE_DIR"] = str(cache / "whole")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    ends = [torch.load(next((cache / c / "checkpoints").glob("*.pt")), weights_only=True) for c in ("killed", "whole")]
    assert ends[0]["meta"]["history"]["epochs"] == ends[1]["meta"]["history"]["epochs"] == 4
    assert all(torch.equal(v, ends[1]["model"][k]) for k, v in ends[0]["model"].items())
    assert ends[0]["meta"]["history"]["metrics"] == ends[1]["meta"]["history"]["metrics"]


def test_a_checkpoint_under_another_key_is_set_aside_not_loaded(cache):
    exp, splits = tiny("clustering_k16"), fake_splits()
    final_state(exp, splits, 1)
    path = next((cache / "cache" / "checkpoints").glob("*.pt"))
    payload = torch.load(path, weights_only=True)
    payload["meta"]["key"] = "0" * 16
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="written under key '0000000000000000'"):
        rec, _ = final_state(exp, splits, 1)
    assert rec["epochs"] == 1 and list((cache / "cache" / "checkpoints").glob("*.corrupt"))


def test_a_checkpoint_of_the_earlier_run_format_is_named_and_never_read(cache, capsys):
    exp, splits = tiny("clustering_k16"), fake_splits()
    old = cache / "cache" / "runs" / f"{exp.name}-quick-seed0-0123456789abcdef.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"the run command's own format, before there was one road")
    rec, _ = final_state(exp, splits, 1)
    assert rec["epochs"] == 1 and old.read_bytes().startswith(b"the run command's own")
    assert "earlier format" in capsys.readouterr().err


def test_records_of_each_scale_sit_side_by_side_and_say_what_ran(cache):
    exp, splits = tiny("semisupervised_1000_labels"), fake_splits()
    rec, _ = final_state(exp, splits, 2)
    path = results.record_path(exp.name, "quick")
    assert path == cache / "results" / "quick" / "semisupervised_1000_labels.json"
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(rec))
    for field in ("scale", "hidden", "epochs", "epochs_planned", "device", "precision", "wall_time_s",
                  "valid_curves", "selected_epochs", "recipe", "seeds", "code_version"):
        assert field in rec, field
    assert rec["hidden"] == [16, 16] and rec["precision"] == "fp32" and len(rec["valid_curves"][0]) == 2
    assert not results.record_path(exp.name, "full").exists()


def test_precision_is_bf16_only_at_full_scale_on_native_bf16(monkeypatch):
    assert engine.precision_for("quick", "cpu") == "fp32"
    monkeypatch.setattr(run.engine, "bf16_supported", lambda device: True)
    assert engine.precision_for("full", "cpu") == "bf16" and engine.precision_for("full", "cpu", "fp32") == "fp32"
    monkeypatch.setattr(run.engine, "bf16_supported", lambda device: False)
    assert engine.precision_for("full", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        engine.precision_for("full", "cpu", "fp16")


def test_the_listing_names_every_experiment_and_its_model_epochs():
    text = run.listing()
    for exp in experiments.CATALOGUE.values():
        assert f"| {exp.name} |" in text
        assert f"= {exp.full.model_epochs} |" in text
    assert f"full {sum(e.full.model_epochs for e in experiments.CATALOGUE.values()):,}" in text


def test_bad_requests_fail_before_training(cache, capsys):
    with pytest.raises(SystemExit):
        run.main(["nope"])
    assert "no experiment 'nope'; the catalogue has: autoencoder_bce" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["clustering_k16", "--device", " "])
    assert "--device must name a device" in capsys.readouterr().err
    with pytest.raises(NotImplementedError, match="trained by its chapter, book/05_supervised.ipynb"):
        run.run(experiments.get("content_follows_label_05_supervised"), splits=fake_splits(), device="cpu")
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        run.run(tiny("clustering_k16"), epochs=0, splits=fake_splits(), device="cpu")


def test_a_sweep_picks_on_validation_and_records_every_value(cache):
    exp = tiny("label_prior_mixture-10k-labels")
    rec = run.sweep(exp, "adv_lr", [1e-4, 4e-3], epochs=1, device="cpu", splits=fake_splits(), progress=False)
    assert [r["adv_lr"] for r in rec["rows"]] == [1e-4, 4e-3]
    assert rec["chosen"] == max(rec["rows"], key=lambda r: r["valid_best"])["adv_lr"]  # higher is better here
    assert "test" not in json.dumps(rec["rows"]) and rec["chosen_on"].startswith("the validation images")
    assert results.record_path("label_prior_mixture-10k-labels_adv_lr_sweep", "quick").is_file()
    with pytest.raises(ValueError, match="sweep a numeric recipe field"):
        run.sweep(exp, "optimiser", [1.0], splits=fake_splits(), device="cpu")
    clusters = run.sweep(tiny("clustering_k16"), "balance", [0.0, 1.0], epochs=1, device="cpu", splits=fake_splits(),
                         progress=False, write=False)
    assert [r["balance"] for r in clusters["rows"]] == [0.0, 1.0] and "clusters_used" in clusters["rows"][0]


def test_a_sweep_from_changed_settings_is_named_and_recorded_as_such(cache):
    exp = tiny("semisupervised_100_labels")
    rec = run.sweep(exp, "adv_lr", [5e-4], epochs=1, device="cpu", splits=fake_splits(), progress=False,
                    base={"z_dim": 10})
    assert rec["experiment"] == "semisupervised_100_labels_z_dim_10_adv_lr_sweep" and rec["base"] == {"z_dim": 10}
    assert rec["settings"] == {**exp.settings, "z_dim": 10} and isinstance(rec["settings"]["z_dim"], int)
    with pytest.raises(ValueError, match="has no numeric model setting style; it has z_dim, batch_norm"):
        run.with_settings(exp, {"style": 3.0})
    with pytest.raises(SystemExit):
        run.main(["semisupervised_100_labels", "--set", "z_dim", "10"])  # --set without --sweep: refused


def test_a_later_sweep_adds_to_the_record_and_the_choice_is_made_again_over_every_row(cache):
    exp = tiny("semisupervised_100_labels")
    first = run.sweep(exp, "adv_lr", [5e-4], epochs=1, device="cpu", splits=fake_splits(), progress=False)
    later = run.sweep(exp, "adv_lr", [1e-3, 2e-4], epochs=1, device="cpu", splits=fake_splits(), progress=False)
    assert [r["adv_lr"] for r in later["rows"]] == [2e-4, 5e-4, 1e-3] and later["precision"] == "fp32"
    assert later["rows"][1] == first["rows"][0]  # the earlier row, kept as it was
    assert later["chosen"] == min(later["rows"], key=lambda r: r["valid_best"])["adv_lr"]
    assert json.loads(results.record_path(later["experiment"], "quick").read_text())["rows"] == later["rows"]
    other = run.sweep(exp, "adv_lr", [5e-4], epochs=2, device="cpu", splits=fake_splits(), progress=False)
    assert [r["adv_lr"] for r in other["rows"]] == [5e-4]  # another length does not compare: replaced
    bad = dict(later["rows"][0], valid_best=-1.0)  # a row the merge must choose: lowest error
    assert run.merge_sweeps(later, {**later, "rows": [bad]})["chosen"] == 2e-4


def test_a_dry_loan_checks_first_then_trains_what_fits_headline_first(cache, monkeypatch):
    monkeypatch.setattr(run.kinds.Splits, "of", classmethod(lambda cls, mnist: fake_splits()))
    monkeypatch.setattr(gpu_check, "load_mnist", lambda device: None)
    out = cache / "loan"
    run.main(["--budget", "6", "--out", str(out), "--dry", "--device", "cpu"])
    report = json.loads((out / "loan.json").read_text())
    assert (out / "gpu_check.json").is_file() and report["dry"] and not report["gpu_check_failures"]
    trained = [t["experiment"] for t in report["trained"]]
    assert trained[0] == "semisupervised_100_labels" and len(trained) >= 2  # the headline first, then what fits
    assert "semisupervised_1000_labels" in report["skipped"]  # it did not fit in what was left
    assert all((out / "full" / f"{name}.json").is_file() for name in trained)
    assert "tar" in (out / "loan.log").read_text().splitlines()[-1]


def test_a_second_process_on_the_same_run_is_refused(cache):
    exp = tiny("clustering_k16")
    with run._exclusive(cache / "cache" / "checkpoints" / "clustering_k16-quick-seed0"):
        with pytest.raises(RuntimeError, match="another process is training clustering_k16-quick-seed0 now"):
            run.run(exp, "quick", device="cpu", splits=fake_splits(), progress=False)
