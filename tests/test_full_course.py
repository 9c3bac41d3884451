"""The one command for the paper-scale book: executes chapters in place, counts what they trained, and resumes."""
import json

import nbformat
import pytest

from aae_tutorial import course, full_course

pytestmark = pytest.mark.notebooks  # executes or reads the book: not in the torch-floor run

CELL = """
import torch
from aae_tutorial import experiments, nets, recipes, steps, train
model = torch.nn.ModuleDict({"enc": nets.encoder(2, (8,)), "dec": nets.decoder(2, (8,))})
opt = recipes.adam(model.parameters(), lr=1e-3)
x = torch.rand(40, 784)
def step(idx):
    loss = steps.reconstruction_loss(model["dec"](model["enc"](x[idx])), x[idx])
    steps.update(opt, loss)
    return {"loss": loss}
run = train.fit("tiny", model, step, x, 3, experiments.run_mode(), "cpu", batch_size=20)
print(experiments.run_mode().name, run.from_checkpoint)
"""


def test_full_course_executes_counts_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AAE_MODE", "quick")  # full_course sets full; monkeypatch restores these afterwards
    monkeypatch.setenv("AAE_RESULTS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("AAE_PROGRESS", "1")
    book = tmp_path / "book"
    book.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch\ntorch.manual_seed(0)\n" + CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "a.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), book / "b.ipynb")

    times = tmp_path / "course_times.json"
    first = full_course.run(["a", "b"], book, times=times)
    executed = nbformat.read(book / "a.ipynb", as_version=4)
    assert "full False" in executed.cells[0].outputs[-1]["text"]  # ran in full mode, trained in this run
    assert executed.metadata["aae_tutorial"]["mode"] == "full"  # the stamp that tells the tests which mode it shows
    # no progress bar (a widget in a kernel, or text on stderr) in the book: only what the cell printed
    assert {(o.output_type, o.get("name")) for o in executed.cells[0].outputs} == {("stream", "stdout")}
    saved = json.loads((book / "results" / "full_course.json").read_text())
    assert saved == first and saved["mode"] == "full" and saved["device"] == "cpu"
    assert [c["chapter"] for c in saved["chapters"]] == ["a", "b"]
    assert saved["chapters"][0]["model_epochs_trained"] == 3 and saved["total_model_epochs_trained"] == 3
    assert saved["total_wall_time_s"] == round(sum(c["wall_time_s"] for c in saved["chapters"]), 1)

    table = full_course.markdown(saved)
    assert "| a |" in table and "| **total** |" in table and "| 3 |" in table and "quick" not in table

    assert json.loads(times.read_text())["full"]["a"]["wall_time_s"] == saved["chapters"][0]["wall_time_s"]
    again = full_course.run(["a"], book, times=times)  # run again: the finished run loads from its checkpoint
    assert "full True" in nbformat.read(book / "a.ipynb", as_version=4).cells[0].outputs[-1]["text"]
    # the record keeps the colder measurement of a, and b's entry; its latest run says it trained nothing
    def kept(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("latest_run", "date")}

    assert kept(again) == kept(saved)
    assert again["latest_run"]["model_epochs_trained"] == 0 and again["latest_run"]["chapters"] == [
        {"chapter": "a", "wall_time_s": again["latest_run"]["wall_time_s"], "runs": 1,
         "runs_loaded_from_checkpoints": 1, "model_epochs_trained": 0}]
    assert saved["latest_run"]["model_epochs_trained"] == 3
    (book / "results" / "full_course.json").unlink()  # with no earlier entry, the warm run is what is known
    warm = full_course.run(["a"], book, times=times)
    assert warm["chapters"][0]["runs_loaded_from_checkpoints"] == 1 and warm["total_model_epochs_trained"] == 0
    assert json.loads(times.read_text())["full"]["a"] == {k: saved["chapters"][0][k] for k in
                                                          ("wall_time_s", "device", "date", "runs",
                                                           "runs_loaded_from_checkpoints")}


def test_a_chapter_run_in_full_mode_states_its_measured_time(tmp_path, monkeypatch, capsys):
    times = tmp_path / "course_times.json"
    full_course.write_times({"mode": "quick", "chapters": [
        {"chapter": "06_x", "wall_time_s": 150.0, "device": "cpu", "date": "2026-01-01", "runs": 4,
         "model_epochs_trained": 9}]}, times)
    full_course.write_times({"mode": "quick", "chapters": [  # a rerun from checkpoints says nothing of a first run
        {"chapter": "06_x", "wall_time_s": 9.0, "device": "cpu", "date": "2026-01-03", "runs": 4,
         "model_epochs_trained": 0}]}, times)
    assert course.expected_time("06_x", times).startswith(
        "Expected time in full mode: not measured yet for this chapter. In quick mode it took 2 min on cpu")
    full_course.write_times({"mode": "quick", "chapters": [  # resumed: 3 of 4 runs loaded, 1 trained
        {"chapter": "06_x", "wall_time_s": 40.0, "device": "cpu", "date": "2026-01-04", "runs": 4,
         "runs_loaded_from_checkpoints": 3, "model_epochs_trained": 3}]}, times)
    kept = json.loads(times.read_text())["quick"]["06_x"]
    assert kept["wall_time_s"] == 150.0 and kept["runs_loaded_from_checkpoints"] == 0  # the cold time stays
    full_course.write_times({"mode": "quick", "chapters": [  # a new cold run replaces it
        {"chapter": "06_x", "wall_time_s": 140.0, "device": "cpu", "date": "2026-01-05", "runs": 4,
         "runs_loaded_from_checkpoints": 0, "model_epochs_trained": 9}]}, times)
    assert json.loads(times.read_text())["quick"]["06_x"]["wall_time_s"] == 140.0
    full_course.write_times({"mode": "full", "chapters": [
        {"chapter": "06_x", "wall_time_s": 183.0, "device": "cuda (H100)", "date": "2026-01-02", "runs": 4,
         "model_epochs_trained": 300}]}, times)
    message = course.expected_time("06_x", times)
    assert message.startswith("Expected time in full mode: about 3 min, as measured on cuda (H100) (2026-01-02).")
    assert "`%env AAE_MODE=quick`" in message
    monkeypatch.setattr(course, "TIMES", times)
    monkeypatch.setenv("AAE_MODE", "full")
    course.start(chapter="06_x")
    assert message in capsys.readouterr().out
    monkeypatch.setenv("AAE_MODE", "quick")
    course.start(chapter="06_x")
    assert "Expected time" not in capsys.readouterr().out
