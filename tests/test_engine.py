"""The engine: the runner sums losses on the device, falls back to eager with one warning when a step cannot be
captured (and then trains exactly as eager does), and applies precision from outside the step."""
import contextlib
import warnings

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


def test_capture_failure_warns_once_and_trains_exactly_like_eager(monkeypatch):
    eager_model, eager_step = aae_and_step()
    eager = run_epoch(engine.StepRunner(eager_step, eager_model, "cpu", graphs=False))

    model, step = aae_and_step()
    for name in ("CUDAGraph", "graph", "Stream", "stream", "synchronize", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(FakeCuda, name))
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
