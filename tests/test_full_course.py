"""The one command for the paper-scale book: executes chapters in place, counts what they trained, and resumes."""
import json

import nbformat

from aae_tutorial import full_course

CELL = """
import torch
from aae_tutorial import mode, nets, steps, train
model = torch.nn.ModuleDict({"enc": nets.encoder(2, (8,)), "dec": nets.decoder(2, (8,))})
opt = train.adam(model.parameters(), lr=1e-3)
x = torch.rand(40, 784)
def step(idx):
    loss = steps.reconstruction_loss(model["dec"](model["enc"](x[idx])), x[idx])
    steps.update(opt, loss)
    return {"loss": loss}
run = train.fit("tiny", model, step, x, 3, mode.run_mode(), "cpu", batch_size=20)
print(mode.run_mode().name, run.from_checkpoint)
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

    first = full_course.run(["a", "b"], book)
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

    again = full_course.run(["a"], book)  # after an interruption: the finished run loads from its checkpoint
    assert again["chapters"][0]["runs_loaded_from_checkpoints"] == 1 and again["total_model_epochs_trained"] == 0
    assert [c["chapter"] for c in again["chapters"]] == ["a", "b"]  # b keeps its entry from the first run
    assert again["chapters"][1] == saved["chapters"][1]
    assert "full True" in nbformat.read(book / "a.ipynb", as_version=4).cells[0].outputs[-1]["text"]
