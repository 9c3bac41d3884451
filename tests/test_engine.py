"""The engine: the runner sums losses on the device, falls back to eager with one warning when a step cannot be
captured (and then trains exactly as eager does), and applies precision from outside the step."""
import contextlib
import warnings

import pytest
import torch

from aae_tutorial import engine, priors, train
from aae_tutorial.aae import AAE


def aae_and_step(seed=0):
    torch.manual_seed(seed)
    model = AAE(priors.Gaussian(2, 5.0), (16, 16))
    x = torch.rand(200, 784)
    return model, (lambda idx: model.train_step(x[idx]))


def run_epoch(runner, seed=1):
    torch.manual_seed(seed)
    for idx in train.minibatches(200, 20, "cpu"):
        runner(idx)
    return runner.epoch_means(10)


def test_eager_runner_sums_every_loss_once_per_step():
    calls = []

    def step(idx):
        calls.append(len(idx))
        return {"a": torch.tensor(float(len(calls))), "b": torch.tensor(2.0)}

    runner = engine.StepRunner(step, torch.nn.Linear(1, 1), "cpu")
    for i in range(4):
        runner(torch.arange(3))
    assert runner.epoch_means(4) == {"a": 2.5, "b": 2.0} and calls == [3] * 4
    assert runner.epoch_means(1) == {"a": 0.0, "b": 0.0}  # reset after each read


class FakeCuda:
    """Just enough of torch.cuda for the capture path, with a capture that fails like an unsupported operation."""

    class CUDAGraph:
        def replay(self):
            raise AssertionError("a graph that failed to capture must never be replayed")

    @staticmethod
    def graph(g):  # capture records kernels without running them: a failed capture has changed no tensor
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            pass

    current_stream = Stream
    stream = staticmethod(lambda s: contextlib.nullcontext())
    synchronize = staticmethod(lambda: None)
    set_stream = staticmethod(lambda s: None)
    sync_debug_mode = 0

    @classmethod
    def get_sync_debug_mode(cls):
        return cls.sync_debug_mode

    @classmethod
    def set_sync_debug_mode(cls, mode):
        cls.sync_debug_mode = {"default": 0, "warn": 1, "error": 2}.get(mode, mode)

    get_rng_state = staticmethod(lambda device=None: torch.random.get_rng_state())
    set_rng_state = staticmethod(lambda state, device=None: torch.random.set_rng_state(state))


FAKED = ("CUDAGraph", "graph", "Stream", "stream", "synchronize", "current_stream", "set_stream",
         "get_sync_debug_mode", "set_sync_debug_mode", "get_rng_state", "set_rng_state")


def fake_cuda(monkeypatch) -> None:
    for name in FAKED:
        monkeypatch.setattr(torch.cuda, name, getattr(FakeCuda, name))
    monkeypatch.setattr(engine, "cuda_present", lambda: True)
    monkeypatch.setattr(engine, "_CAPTURE_DISABLED", None)  # a failed capture here must not leak into other tests


def test_capture_failure_warns_once_and_trains_exactly_like_eager(monkeypatch):
    eager_model, eager_step = aae_and_step()
    eager = run_epoch(engine.StepRunner(eager_step, eager_model, "cpu", graphs=False))

    model, step = aae_and_step()
    fake_cuda(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = engine.StepRunner(step, model, "cpu", desc="test run", graphs=True)
        assert all(g["capturable"] for opt in engine.optimisers(model) for g in opt.param_groups)
        for opt in engine.optimisers(model):  # capturable is a CUDA feature; this CPU run checks the fallback only
            for g in opt.param_groups:
                g["capturable"] = False
        fallback = run_epoch(runner)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith("test run: running eagerly, the step could not be captured as a CUDA graph "
                                  "(RuntimeError: CUDA error: operation not permitted")
    assert not runner.graphs and fallback == eager
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), eager_model.state_dict().values()))


def test_graphs_only_on_cuda_and_can_be_switched_off(monkeypatch):
    assert not engine.graphs_enabled("cpu")
    assert engine.graphs_enabled("cuda")
    monkeypatch.setenv("AAE_CUDA_GRAPHS", "0")
    assert not engine.graphs_enabled("cuda")


def test_precision_is_applied_from_outside_the_step():
    seen = []

    def step(idx):
        seen.append(torch.is_autocast_enabled("cpu"))
        return {"y": (torch.ones(2, 2) @ torch.ones(2, 2)).sum()}

    assert engine.autocast(step, "cpu", None) is step
    out = engine.autocast(step, "cpu", torch.bfloat16)(torch.arange(2))
    step(torch.arange(2))
    assert seen == [True, False] and out["y"].dtype == torch.bfloat16


def test_optimisers_are_found_on_the_model_and_in_the_step():
    model, _ = aae_and_step()
    assert {id(o) for o in engine.optimisers(model)} == {id(model.opt_ae), id(model.opt_d), id(model.opt_g)}
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())

    def step(idx):  # an optimiser the step closes over, as in chapter 1
        opt.step()
        return {}

    assert engine.optimisers(net, step) == [opt] and engine.optimisers(net) == []


def test_a_failed_capture_reports_its_real_cause():
    try:
        try:
            raise ValueError("the step's own error")
        except ValueError:
            raise RuntimeError("operation failed due to a previous error during capture")
    except RuntimeError as e:
        assert str(engine.capture_failure_cause(e)) == "the step's own error"
    plain = KeyError("x")
    assert engine.capture_failure_cause(plain) is plain


def test_a_step_that_syncs_is_found_in_warm_up_and_never_captured(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setattr(FakeCuda, "graph", staticmethod(lambda g: pytest.fail("capture must not be tried")))
    model = torch.nn.Linear(2, 2)

    def step(idx):
        if torch.cuda.get_sync_debug_mode() == 2:  # what torch does to an .item() in "error" mode
            raise RuntimeError("called a synchronizing CUDA operation")
        return {"loss": model(torch.ones(1, 2)).sum()}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = engine.StepRunner(step, model, "cpu", desc="sync", graphs=True)
        for _ in range(engine.WARMUP_STEPS + 2):
            runner(torch.arange(1))
    messages = [str(w.message) for w in caught]
    assert messages == ["sync: running eagerly, the step reads a value back to the host, which a CUDA graph cannot "
                        "capture (RuntimeError: called a synchronizing CUDA operation)"]
    assert runner.graphs is False and FakeCuda.sync_debug_mode == 0  # the debug mode is restored


def test_on_old_torch_a_failed_capture_turns_capture_off_for_the_process(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setattr(engine, "_allocator_survives_failed_capture", lambda: False)
    monkeypatch.setattr(engine, "_CAPTURE_DISABLED", None)  # restored after the test
    model = torch.nn.Linear(2, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = engine.StepRunner(lambda idx: {"loss": model(torch.ones(1, 2)).sum()}, model, "cpu", graphs=True)
        for _ in range(engine.WARMUP_STEPS + 1):
            runner(torch.arange(1))
    (message,) = [str(w.message) for w in caught]
    assert "could not be captured" in message and message.endswith("cannot be trusted after that")
    assert engine._CAPTURE_DISABLED is not None


def test_capture_stays_off_after_an_allocator_breaking_failure(monkeypatch):
    monkeypatch.setattr(engine, "graphs_enabled", lambda device: True)
    monkeypatch.setattr(engine, "_CAPTURE_DISABLED", "CUDA graphs are off for the rest of this process: test")
    model = torch.nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="running eagerly, CUDA graphs are off for the rest of this process"):
        runner = engine.StepRunner(lambda idx: {"loss": model(torch.ones(1, 2)).sum()}, model, "cpu", desc="t")
    assert runner.graphs is False
    runner(torch.arange(1))
    assert runner.calls == 1 and set(runner.sums) == {"loss"}


@pytest.mark.parametrize("faithful", [True, False])
def test_a_capture_is_checked_against_eager_before_it_is_trusted(monkeypatch, faithful):
    """A fake capture whose replay reruns the step (faithful) or reruns it and then shifts the weights (a replay
    that trains wrongly): the first is trusted, the second falls back to eager with a warning; both train as eager."""
    eager_model, eager_step = aae_and_step()
    eager = run_epoch(engine.StepRunner(eager_step, eager_model, "cpu", graphs=False))
    model, step = aae_and_step()
    runner = None

    class Graph:
        def replay(self):
            runner._accumulate(runner.step(runner.static_idx))
            if not faithful:
                with torch.no_grad():
                    model.encoder[0].weight.add_(1e-3)

    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())  # the body runs; it is undone
    monkeypatch.setattr(engine, "_VERIFIED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = engine.StepRunner(step, model, "cpu", desc="checked", graphs=True)
        for opt in engine.optimisers(model):
            for g in opt.param_groups:
                g["capturable"] = False
        means = run_epoch(runner)
    messages = [str(w.message) for w in caught]
    if faithful:
        assert messages == [] and runner.graph is not None and len(engine._VERIFIED) == 1
    else:
        assert len(messages) == 1 and runner.graph is None and not runner.graphs and not engine._VERIFIED
        assert "checked: running eagerly, the captured step aae_and_step.<locals>.<lambda> did not reproduce the " \
               "eager step" in messages[0]
    assert means == pytest.approx(eager, rel=1e-6)
    for a, b in zip(model.state_dict().values(), eager_model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_graphs_on_a_machine_without_cuda_is_refused_with_the_fix():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="graphs=True needs a CUDA GPU.*leave graphs=None"):
        engine.StepRunner(lambda idx: {"loss": model(torch.ones(1, 2)).sum()}, model, "cpu", graphs=True)
