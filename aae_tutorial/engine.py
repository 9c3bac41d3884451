"""Speed machinery, kept out of the chapters: how a training step is run, and at what precision.

:class:`StepRunner` runs a chapter's ``step(batch_indices)`` and sums its losses on the device. On CUDA it captures
the *whole* step (every phase and every optimiser update) once as a CUDA graph and then replays it, which removes the
Python and kernel-launch overhead that bounds these small networks; elsewhere, or if capture fails, the same step
runs eagerly and a one-line warning says why. The algorithm is the same either way: the graph replays exactly the
kernels the eager step launches, on the same parameter tensors, with its random numbers drawn inside the graph.

Set ``AAE_CUDA_GRAPHS=0`` to run eagerly on CUDA too.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

Step = Callable[[Tensor], dict[str, Tensor]]
#: Eager steps before capture: optimiser state and autograd buffers exist before the graph records them.
WARMUP_STEPS = 3


def graphs_enabled(device: torch.device | str) -> bool:
    """Whole-step CUDA graphs: on CUDA devices, unless ``AAE_CUDA_GRAPHS=0``."""
    return torch.device(device).type == "cuda" and os.environ.get("AAE_CUDA_GRAPHS", "1") != "0"


def optimisers(model: nn.Module, step: Step | None = None) -> list[torch.optim.Optimizer]:
    """The optimisers a model holds as attributes (its own and its submodules'), and those ``step`` closes over."""
    held = [v for m in model.modules() for v in vars(m).values()]
    closed_over = [c.cell_contents for c in getattr(step, "__closure__", None) or ()]
    found = [v for v in held + closed_over if isinstance(v, torch.optim.Optimizer)]
    return list({id(o): o for o in found}.values())


class StepRunner:
    """Calls ``step(idx)`` per minibatch, eagerly or as a replayed CUDA graph, and keeps the loss sums on the device."""

    def __init__(self, step: Step, model: nn.Module, device: torch.device | str, desc: str = "training",
                 graphs: bool | None = None) -> None:
        self.step, self.desc = step, desc
        self.graphs = graphs_enabled(device) if graphs is None else graphs
        self.sums: dict[str, Tensor] = {}
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_idx: Tensor | None = None
        if self.graphs:  # the optimisers' step counters must live on the GPU to be updated inside a graph
            for opt in optimisers(model, step):
                for group in opt.param_groups:
                    group["capturable"] = True
            self.side_stream = torch.cuda.Stream(device)

    def _accumulate(self, losses: dict[str, Tensor]) -> None:
        for k, v in losses.items():
            if k not in self.sums:
                self.sums[k] = torch.zeros((), dtype=torch.float32, device=v.device)
            self.sums[k].add_(v.detach().float())

    def _eager(self, idx: Tensor) -> None:
        self._accumulate(self.step(idx))

    def _capture(self, idx: Tensor) -> None:
        """Record one whole step, loss accumulation included, as a CUDA graph; fall back to eager if that fails."""
        self.static_idx = idx.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                self._accumulate(self.step(self.static_idx))
        except Exception as e:  # noqa: BLE001 - any capture failure: run this and every later step eagerly
            first_line = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            warnings.warn(f"{self.desc}: running eagerly, the step could not be captured as a CUDA graph "
                          f"({type(e).__name__}: {first_line})", stacklevel=3)
            self.graphs = False
            torch.cuda.synchronize()
            self._eager(idx)
            return
        self.graph = graph
        self.graph.replay()  # capture records without running: now run it for this minibatch

    def __call__(self, idx: Tensor) -> None:
        self.calls += 1
        if not self.graphs:
            self._eager(idx)
        elif self.graph is not None:
            self.static_idx.copy_(idx)
            self.graph.replay()
        elif self.calls <= WARMUP_STEPS:  # warm up on a side stream, as CUDA graph capture requires
            self.side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side_stream):
                self._eager(idx)
            torch.cuda.current_stream().wait_stream(self.side_stream)
        else:
            self._capture(idx)

    def epoch_means(self, steps: int) -> dict[str, float]:
        """Mean of every loss over the epoch's ``steps`` minibatches (one read from the device), then reset."""
        if not self.sums:
            return {}
        names = list(self.sums)
        means = (torch.stack([self.sums[k] for k in names]) / steps).tolist()
        for v in self.sums.values():
            v.zero_()
        return dict(zip(names, means))


def autocast(step: Step, device: torch.device | str, dtype: torch.dtype | None) -> Step:
    """``step`` run under ``torch.autocast`` at ``dtype`` (e.g. bf16), or unchanged for ``None`` (full fp32)."""
    if dtype is None:
        return step
    device_type = torch.device(device).type

    def step_at_precision(idx: Tensor) -> dict[str, Tensor]:
        with torch.autocast(device_type, dtype):
            return step(idx)

    return step_at_precision


def bf16_supported(device: torch.device | str) -> bool:
    """bf16 matrix units: CUDA GPUs with bf16, and CPUs with AMX or AVX-512 BF16 (elsewhere bf16 is emulated, slowly)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False

