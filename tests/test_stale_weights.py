"""A learner's edit always retrains: the six ways an edit used to be missed (issue 43), each run as a learner would,
in notebook code (executed as a cell is, under ``__main__``, where no source file exists), then edited and run
again. Each first reruns unchanged, which must load its checkpoint, so that a key that never matched would fail too.
"""
import copyreg
import importlib
import sys
import textwrap

import numpy as np
import pytest
import torch

from aae_tutorial import checkpoints, experiments, train

QUICK = experiments.RunMode("quick", "test")

PREAMBLE = """
import numpy as np
import torch
from aae_tutorial import priors, steps
from aae_tutorial.aae import AAE
"""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AAE_PROGRESS", "0")


def cell(namespace: dict, source: str) -> dict:
    """Run ``source`` as a notebook cell would: in the notebook's namespace, from no file."""
    exec(compile(textwrap.dedent(source), "<ipython-input>", "exec"), namespace)
    return namespace


def notebook() -> dict:
    return cell({"__name__": "__main__"}, PREAMBLE)


def images() -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.rand(4, 784) > 0.7).float()[torch.arange(100) % 4]


def fit(ns: dict, model_expr: str = "AAE(priors.Gaussian(2), (8,))", step_expr: str = "make_step(model, x)",
        config: dict | None = None) -> train.Run:
    """The chapter's training cell: build the model, make its step, fit."""
    torch.manual_seed(0)
    ns["x"] = images()
    cell(ns, f"model = {model_expr}\nstep = {step_expr}")
    return train.fit("edit", ns["model"], ns["step"], ns["x"], 1, QUICK, "cpu", batch_size=50, config=config)


def twice_then_edited(ns: dict, edit, after: dict | None = None, **kw) -> None:
    """Train, rerun unchanged (loads), ``edit(ns)``, rerun (with ``after`` in place of ``kw``): must train."""
    assert not fit(ns, **kw).from_checkpoint
    assert fit(ns, **kw).from_checkpoint, "unchanged, the run must reuse its checkpoint"
    edit(ns)
    assert not fit(ns, **(after or kw)).from_checkpoint, "the edit was missed: the old weights were loaded"


STEP = """
def make_step(model, x):
    return lambda idx: model.train_step(x[idx])
"""


def test_a_subclass_defined_in_the_notebook_with_another_train_step():
    ns = cell(cell(notebook(), STEP), """
    class MyAAE(AAE):
        def train_step(self, x):
            return super().train_step(x)
    """)
    twice_then_edited(ns, lambda ns: cell(ns, """
    class MyAAE(AAE):
        def train_step(self, x):
            return super().train_step(x.clamp(0.1, 0.9))
    """), model_expr="MyAAE(priors.Gaussian(2), (8,))")


def test_a_prior_defined_in_the_notebook_whose_sample_changes():
    ns = cell(cell(notebook(), STEP), """
    class MyPrior(priors.Prior):
        dim = 2
        def _sample(self, n, labels):
            return torch.randn(n, 2) * 5
    """)
    twice_then_edited(ns, lambda ns: cell(ns, """
    class MyPrior(priors.Prior):
        dim = 2
        def _sample(self, n, labels):
            return torch.rand(n, 2)
    """), model_expr="AAE(MyPrior(), (8,))")


def test_a_config_tensor_that_differs_only_in_the_middle():
    ns = cell(notebook(), STEP)
    weights = torch.zeros(2000)
    changed = weights.clone()
    changed[1000] = 0.5  # torch prints the two alike ("0., 0., ..., 0.")
    assert repr(weights) == repr(changed)
    twice_then_edited(ns, lambda ns: None, after={"config": {"weights": changed}}, config={"weights": weights})


def test_a_global_numpy_array_the_step_reads_changed_in_place():
    ns = cell(notebook(), """
    NOISE = np.zeros(2000, dtype=np.float32)
    def make_step(model, x):
        return lambda idx: model.train_step(x[idx] + float(NOISE[1000]))
    """)
    twice_then_edited(ns, lambda ns: cell(ns, "NOISE[1000] = 0.5"))


def test_a_function_of_the_learners_own_module_edited_and_reloaded(tmp_path, monkeypatch):
    (tmp_path / "my_helpers.py").write_text("def noisy(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ns = cell(notebook(), """
    import my_helpers
    def make_step(model, x):
        return lambda idx: model.train_step(my_helpers.noisy(x[idx]))
    """)

    def edit(ns):
        (tmp_path / "my_helpers.py").write_text("def noisy(x):\n    return x.clamp(0.1, 0.9)\n")
        importlib.reload(ns["my_helpers"])

    try:
        twice_then_edited(ns, edit)
    finally:
        sys.modules.pop("my_helpers", None)


HELPERS = """
def h5(x):
    return x * {scale}
def h4(x):
    return h5(x)
def h3(x):
    return h4(x)
def h2(x):
    return h3(x)
def h1(x):
    return h2(x)
def make_step(model, x):
    return lambda idx: model.train_step(h1(x[idx]))
"""


def test_a_helper_five_calls_below_the_step_edited_in_the_same_cell():
    ns = cell(notebook(), HELPERS.format(scale="1.0"))
    twice_then_edited(ns, lambda ns: cell(ns, HELPERS.format(scale="0.5")))


def test_a_value_the_key_cannot_see_into_trains_and_says_so(capsys):
    ns = cell(notebook(), """
    import threading
    LOCK = threading.Lock()
    def make_step(model, x):
        def step(idx):
            with LOCK:
                return model.train_step(x[idx])
        return step
    """)
    assert not fit(ns).from_checkpoint
    assert not fit(ns).from_checkpoint  # never reused: the key cannot tell whether the lock's owner changed
    out = capsys.readouterr().out
    assert "the step reads a lock" in out.lower() and "saves no checkpoint" in out
    with pytest.raises(checkpoints.UnsureKey, match="hold that value as numbers, a tensor, an array"):
        checkpoints.key("k", ns["model"], ns["step"], [], {}, "quick")


def test_an_earlier_run_saving_its_checkpoint_leaves_the_next_runs_key_as_it_was():
    """Found by a second, warm quick book: pickling an instance (an earlier run saving its checkpoint) caches
    ``__slotnames__`` on its class, so a cold book's later keys differed from a warm book's, and the warm one trained
    those runs again."""
    ns = cell(notebook(), STEP)
    ns["x"] = images()
    cell(ns, "model = AAE(priors.Gaussian(2), (8,))\nstep = make_step(model, x)")
    before = checkpoints.key("k", ns["model"], ns["step"], [ns["x"]], {}, "quick")
    classes = {c for m in list(sys.modules.values()) if m.__name__.startswith("aae_tutorial")
               for c in vars(m).values() if isinstance(c, type) and c.__module__ == m.__name__}
    added = [c for c in classes if "__slotnames__" not in vars(c)]
    for c in added:
        copyreg._slotnames(c)  # what pickling an instance of it does
    try:
        assert added and checkpoints.key("k", ns["model"], ns["step"], [ns["x"]], {}, "quick") == before
    finally:
        for c in added:
            type.__delattr__(c, "__slotnames__")


def test_library_code_counts_by_its_version_and_is_not_walked():
    assert checkpoints.fingerprint(torch.nn.functional.mse_loss).startswith("function torch.nn.functional.mse_loss")
    assert f"numpy {np.__version__}" in checkpoints.fingerprint(np.mean)


KEYS = """
import dataclasses, json, sys, torch
from aae_tutorial import checkpoints, experiments, kinds, train
g = torch.Generator().manual_seed(0)
x, y = torch.rand(1000, 784, generator=g), torch.arange(1000) % 10
splits = kinds.Splits(x[:600], y[:600], x[600:800], y[600:800], x[800:], y[800:])
keys = {}
for exp in experiments.CATALOGUE.values():
    if exp.kind in kinds.KINDS:
        exp = dataclasses.replace(exp, labels_per_class=exp.labels_per_class and 2)
        torch.manual_seed(0)
        try:
            t = kinds.build(exp, (16,), 0, splits)
        except NotImplementedError:  # built by its chapter only
            continue
        keys[exp.name] = checkpoints.key(exp.name, t.model, t.step, t.data, {}, "quick", train.LOOP)
print(json.dumps(keys))
"""


def test_every_experiment_of_the_catalogue_gets_the_same_key_in_a_new_process():
    """What lets a warm rerun of the book load its checkpoints: no key reads a memory address, a hash-ordered set or
    anything it cannot see into (which would retrain every time)."""
    import json
    import subprocess

    runs = [subprocess.run([sys.executable, "-c", KEYS], capture_output=True, text=True, timeout=300,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}) for seed in (1, 2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    first, second = (json.loads(r.stdout) for r in runs)
    assert len(first) >= 20 and first == second
