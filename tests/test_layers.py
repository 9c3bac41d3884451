"""Layers that point one way: the method (models, priors, steps, metrics) knows nothing of training, checkpoints or
records, and no module of the package loads another behind the import graph's back."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aae_tutorial"
#: The method: the paper's models, priors, training steps and metrics, and what they are built from.
METHOD = ("nets", "priors", "steps", "metrics", "recipes", "aae", "vae", "conditional", "categorical", "judge")
#: What every layer may use: argument checks, Markdown tables, atomic files, the data.
SHARED = ("checks", "tables", "files", "data")
#: Training, checkpoints and records: what the method must not import.
ABOVE = ("train", "checkpoints", "history", "results", "run", "__main__", "engine", "kinds", "experiments", "course",
         "full_course", "gpu_check", "bench", "plan", "trials", "widgets", "plots", "figures")


def imports(module: str) -> set[str]:
    """The package modules ``module`` imports (``from . import x``, ``from .x import y``, ``import aae_tutorial.x``),
    at any depth of its code."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("aae_tutorial")):
            base = (node.module or "").removeprefix("aae_tutorial").lstrip(".")
            found |= {base.split(".")[0]} if base else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("aae_tutorial.")}
    return found


@pytest.mark.parametrize("module", METHOD + SHARED)
def test_the_method_imports_no_training_checkpoint_or_record_code(module):
    assert not imports(module) & set(ABOVE), sorted(imports(module) & set(ABOVE))


def test_every_module_is_placed_in_a_layer():
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(METHOD) | set(SHARED) | set(ABOVE)


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_no_module_loads_another_through_importlib(module):
    assert "importlib" not in (PACKAGE / f"{module}.py").read_text()


def calls(module: str, owner: str, name: str) -> list[int]:
    """The lines of ``module`` that call ``owner.name(...)`` (e.g. ``torch.save``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == name
            and isinstance(node.func.value, ast.Name) and node.func.value.id == owner]


def test_one_road_writes_checkpoints():
    """Weights reach the disk in one format, :func:`aae_tutorial.checkpoints.save` (the only ``torch.save``), called
    by one loop only: :func:`aae_tutorial.train.fit` and ``fit_together``, through ``train._save``."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert [m for m in modules if calls(m, "torch", "save")] == ["checkpoints"]
    writers = {m: lines for m in modules if (lines := calls(m, "checkpoints", "save"))}
    assert list(writers) == ["train"] and len(writers["train"]) == 1, writers


def test_one_module_writes_the_experiment_records():
    """Every experiment record, the chapters' and the run command's, is written by :mod:`aae_tutorial.results`; the
    other JSON files (the course's times, the GPU check and a loan's report) are the course's own."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    writers = [m for m in modules if "write_json(" in (PACKAGE / f"{m}.py").read_text()]
    assert writers == ["full_course", "gpu_check", "results"], writers
    assert not calls("run", "records", "write_json") and "write_json" not in (PACKAGE / "run.py").read_text()


MODELS = {"CategoricalAAE", "AAE", "VAE", "LabelConditionedAAE", "SupervisedAAE", "DigitClassifier"}


def test_the_catalogues_models_are_built_in_one_place():
    """The run command's runs and the GPU check's cases build an experiment's model with
    :func:`aae_tutorial.kinds.build_model`; no command writes a model's constructor call again."""
    for module in ("kinds", "gpu_check", "run", "plan", "full_course"):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        made = {id(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) in MODELS}
        allowed = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "build_model"
                   for n in ast.walk(f)} if module == "kinds" else set()
        assert made <= allowed, module
