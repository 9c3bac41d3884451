"""Speed machinery, kept out of the chapters: how a training step is run, in what batches, and at what precision.

:class:`StepRunner` runs a chapter's ``step(batch_indices)`` and sums its losses on the device. On CUDA it captures
the *whole* step (every phase and every optimiser update) once as a CUDA graph and then replays it, which removes the
Python and kernel-launch overhead that bounds these small networks; elsewhere, or if capture fails, the same step
runs eagerly and a one-line warning says why. The algorithm is the same either way: the graph replays exactly the
kernels the eager step launches, on the same parameter tensors, with its random numbers drawn inside the graph.

Set ``AAE_CUDA_GRAPHS=0`` to run eagerly on CUDA too.

:func:`stack` turns M models of one architecture (say, three seeds) into one *ensemble* model that trains them
together: every ``nn.Linear`` becomes a :class:`BatchedLinear` holding the M members' weights (and every
``nn.BatchNorm1d`` a :class:`BatchedBatchNorm1d` with per-member statistics; a module with a class attribute
``members`` is told M), and member m owns rows ``m*B .. (m+1)*B`` of every minibatch. The step code is unchanged: the
step sees a minibatch of M*B rows. Every loss in this course is a mean over the minibatch's rows, or (a batch-level
term such as :class:`~aae_tutorial.categorical.CategoryUseEntropy`) a mean over the members. Either way it is (1/M)
times the sum of the members' losses, so each member's gradient is its own loss's gradient divided by M; a gradient
hook multiplies it back. Adam is elementwise, so each member's update is the one it would make alone
(:func:`unstack_into` copies the weights back). Members keep their own initial weights and data order; the noise drawn
inside a step (prior samples, input noise) comes from one shared stream, so it is independent between members but not
the numbers a member's single run would draw.
"""
from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Step = Callable[[Tensor], dict[str, Tensor]]
#: Eager steps before capture: optimiser state and autograd buffers exist before the graph records them.
WARMUP_STEPS = 3
#: The largest relative difference allowed between one captured and one eager step's weight updates.
CAPTURE_TOLERANCE = 1e-3
#: The kinds of step (code and device) whose captured graph has been checked against eager in this process.
_VERIFIED: set[tuple] = set()
#: Why capture is off for the rest of this process, once a failed capture has left torch's caching allocator in a
#: state later captures cannot trust (torch before 2.12); ``None`` while capture is safe to try.
_CAPTURE_DISABLED: str | None = None


def _allocator_survives_failed_capture() -> bool:
    """From torch 2.12 on, a failed capture resets the caching allocator's capture state; before, it does not."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 12)


def capture_failure_cause(error: BaseException) -> BaseException:
    """The error that made a capture fail. When the step raises inside ``torch.cuda.graph``, leaving the context
    raises a second error ("... previous error during capture") whose ``__context__`` holds the real cause."""
    while error.__context__ is not None and "previous error during capture" in str(error):
        error = error.__context__
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:160]}" if text else type(error).__name__


def graphs_enabled(device: torch.device | str) -> bool:
    """Whole-step CUDA graphs: on CUDA devices, unless ``AAE_CUDA_GRAPHS=0``."""
    return torch.device(device).type == "cuda" and os.environ.get("AAE_CUDA_GRAPHS", "1") != "0"


def optimisers(model: nn.Module, step: Step | None = None) -> list[torch.optim.Optimizer]:
    """The optimisers a model holds as attributes (its own and its submodules'), and those ``step`` closes over."""
    held = [v for m in model.modules() for v in vars(m).values()]
    closed_over = [c.cell_contents for c in getattr(step, "__closure__", None) or ()]
    found = [v for v in held + closed_over if isinstance(v, torch.optim.Optimizer)]
    return list({id(o): o for o in found}.values())


def cuda_present() -> bool:
    """Whether this machine has a CUDA GPU (the tests fake one)."""
    return torch.cuda.is_available()


class StepRunner:
    """Calls ``step(idx)`` per minibatch, eagerly or as a replayed CUDA graph, and keeps the loss sums on the device."""

    def __init__(self, step: Step, model: nn.Module, device: torch.device | str, desc: str = "training",
                 graphs: bool | None = None) -> None:
        self.step, self.desc, self.model, self.device = step, desc, model, torch.device(device)
        self.graphs = graphs_enabled(device) if graphs is None else graphs
        if graphs and not cuda_present():
            raise ValueError(f"{desc}: graphs=True needs a CUDA GPU, and this machine has none; leave graphs=None "
                             "to use them wherever they are available")
        self.sums: dict[str, Tensor] = {}
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_idx: Tensor | None = None
        if self.graphs and _CAPTURE_DISABLED is not None:
            warnings.warn(f"{desc}: running eagerly, {_CAPTURE_DISABLED}", stacklevel=2)
            self.graphs = False
        if self.graphs:  # the optimisers' step counters must live on the GPU to be updated inside a graph
            for opt in optimisers(model, step):
                for group in opt.param_groups:
                    group["capturable"] = True
            self.side_stream = torch.cuda.Stream(device)

    def _accumulate(self, losses: dict[str, Tensor]) -> None:
        if not self.sums and not (isinstance(losses, dict) and losses and all(
                isinstance(k, str) and isinstance(v, Tensor) and v.ndim == 0 for k, v in losses.items())):
            raise TypeError(f"{self.desc}: a training step must return its losses as a non-empty dict of 0-d "
                            f"tensors, e.g. {{'reconstruction': loss}}; got {type(losses).__name__} {losses!r:.120}")
        for k, v in losses.items():
            if k not in self.sums:
                self.sums[k] = torch.zeros((), dtype=torch.float32, device=v.device)
            self.sums[k].add_(v.detach().float())

    def _eager(self, idx: Tensor) -> None:
        self._accumulate(self.step(idx))

    def _fall_back(self, reason: str, idx: Tensor) -> None:
        """Run this and every later step eagerly, with a one-line warning saying why."""
        warnings.warn(f"{self.desc}: running eagerly, {reason}", stacklevel=4)
        self.graphs = False
        torch.cuda.synchronize()
        self._eager(idx)

    def _warm_up(self, idx: Tensor, last: bool) -> None:
        """One eager step on a side stream, as capture requires. The last one runs under torch's sync debug mode, so
        a step that reads a value back to the host (which no graph can capture) is found before capture is tried."""
        self.side_stream.wait_stream(torch.cuda.current_stream())
        mode, synced = torch.cuda.get_sync_debug_mode(), None
        try:
            with torch.cuda.stream(self.side_stream), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable.*")  # set for the graph; eager warm-up is fine
                if last:
                    torch.cuda.set_sync_debug_mode("error")
                self._eager(idx)
        except RuntimeError as e:
            if not last or "synchroniz" not in str(e):
                raise
            synced = e
        finally:
            torch.cuda.set_sync_debug_mode(mode)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        if synced is not None:
            self._fall_back(f"the step reads a value back to the host, which a CUDA graph cannot capture "
                            f"({_first_line(synced)})", idx)

    def _capture(self, idx: Tensor) -> None:
        """Record one whole step, loss accumulation included, as a CUDA graph; fall back to eager if that fails."""
        global _CAPTURE_DISABLED
        self.static_idx = idx.clone()
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream()
        try:
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                self._accumulate(self.step(self.static_idx))
        except Exception as e:  # noqa: BLE001 - any capture failure: run this and every later step eagerly
            torch.cuda.set_stream(stream)  # a failed capture can leave its capture stream current
            reason = f"the step could not be captured as a CUDA graph ({_first_line(capture_failure_cause(e))})"
            if not _allocator_survives_failed_capture():
                _CAPTURE_DISABLED = (f"CUDA graphs are off for the rest of this process: an earlier capture failed, "
                                     f"and torch {torch.__version__}'s allocator cannot be trusted after that")
                reason += f"; {_CAPTURE_DISABLED}"
            self._fall_back(reason, idx)
            return
        self.graph = graph
        self.graph.replay()  # capture records without running: now run it for this minibatch

    def _state(self) -> list[Tensor]:
        """Every tensor a step changes, the loss sums last: weights, buffers, optimiser states."""
        opt_state = [v for opt in optimisers(self.model, self.step) for s in opt.state.values() for v in s.values()
                     if isinstance(v, Tensor)]
        return [*self.model.parameters(), *self.model.buffers(), *opt_state, *self.sums.values()]

    def _verified_capture(self, idx: Tensor) -> None:
        """Capture, the first time this kind of step is captured on this device in this process, only after checking
        the graph: one eager step from a snapshot, the snapshot restored, the captured step replayed from it, their
        weight updates compared. Where they differ by more than :data:`CAPTURE_TOLERANCE` (an RNG offset, a stale
        input, a state outside the graph's pool), the snapshot is restored and the step runs eagerly from then on,
        with a warning naming the step and the largest difference."""
        kind = (getattr(self.step, "__qualname__", repr(self.step)), getattr(getattr(self.step, "__code__", None),
                                                                              "co_firstlineno", 0), str(self.device))
        if kind in _VERIFIED:
            self._capture(idx)
            return
        tensors, rng = self._state(), torch.cuda.get_rng_state(self.device)
        before = [t.detach().clone() for t in tensors]
        self.step(idx)  # eager, not summed
        eager = [t.detach().clone() for t in tensors]

        def restore() -> None:
            with torch.no_grad():
                for t, b in zip(tensors, before):
                    t.copy_(b)
            torch.cuda.set_rng_state(rng, self.device)

        restore()
        self._capture(idx)
        if self.graph is None:  # the capture failed and this minibatch ran eagerly
            return
        restore()  # (a capture runs nothing on a GPU; this also undoes the graph's first replay) and replay it
        self.graph.replay()
        trained = len(tensors) - len(self.sums)  # the eager step was not summed: compare what it trained
        worst = max((((t - e).abs().max() / ((e - b).abs().max() + 1e-6 * b.abs().max() + 1e-12)).item()
                     for t, e, b in zip(tensors[:trained], eager, before) if t.is_floating_point() and t.numel()),
                    default=0.0)
        if worst > CAPTURE_TOLERANCE:
            restore()
            self.graph = None
            self._fall_back(f"the captured step {kind[0]} did not reproduce the eager step (weight updates differ by "
                            f"up to {worst:.2g} of their size)", idx)
            return
        _VERIFIED.add(kind)

    def __call__(self, idx: Tensor) -> None:
        self.calls += 1
        if not self.graphs:
            self._eager(idx)
        elif self.graph is not None:
            self.static_idx.copy_(idx)
            self.graph.replay()
        elif self.calls <= WARMUP_STEPS:
            self._warm_up(idx, last=self.calls == WARMUP_STEPS)
        else:
            self._verified_capture(idx)

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


#: What the run command's ``--precision`` takes.
PRECISIONS = ("auto", "fp32", "bf16")


def precision_for(scale: str, device: torch.device | str, asked: str = "auto") -> str:
    """The precision a run trains at, ``bf16`` or ``fp32``: ``auto`` is bf16 at full scale on a device with native bf16, fp32 otherwise."""
    if asked not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {asked!r}")
    if asked == "auto":
        return "bf16" if scale == "full" and bf16_supported(device) else "fp32"
    return asked


# Batched ensembles: several models built alike trained as one (see the module docstring).

class BatchedLinear(nn.Module):
    """M ``nn.Linear`` layers at once, member m applied to its block of rows: x (M*B, in) -> (M*B, out).

    ``weight`` is (M, out, in) and ``bias`` (M, out). One batched matmul replaces M small ones; a single member runs
    the very kernel of ``nn.Linear``, so a one-member ensemble is bit-for-bit the single model.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        has_bias = layers[0].bias is not None
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.members == 1:
            return F.linear(x, self.weight[0], None if self.bias is None else self.bias[0])
        if len(x) % self.members:
            raise ValueError(f"an ensemble of {self.members} needs a multiple of {self.members} rows, got {len(x)}")
        out = torch.bmm(x.reshape(self.members, -1, x.shape[-1]), self.weight.transpose(1, 2))  # (M, B, out)
        if self.bias is not None:
            out = out + self.bias.unsqueeze(1)
        return out.reshape(-1, out.shape[-1])

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape[1:]
        return f"members={self.members}, in_features={in_features}, out_features={out_features}"


class BatchedBatchNorm1d(nn.Module):
    """M ``nn.BatchNorm1d`` layers at once: each member normalises its own block of rows with its own batch
    statistics, affine weights and running averages. x (M*B, F) -> (M*B, F)."""

    def __init__(self, layers: Sequence[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = layers[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise ValueError("only affine batch norm with running statistics and a momentum can be stacked")
        self.members, self.eps, self.momentum = len(layers), first.eps, first.momentum
        self.weight = nn.Parameter(torch.stack([b.weight.detach() for b in layers]))  # (M, F)
        self.bias = nn.Parameter(torch.stack([b.bias.detach() for b in layers]))
        self.register_buffer("running_mean", torch.stack([b.running_mean for b in layers]))
        self.register_buffer("running_var", torch.stack([b.running_var for b in layers]))
        self.register_buffer("num_batches_tracked", torch.stack([b.num_batches_tracked for b in layers]))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.members == 1:
            return F.batch_norm(x, self.running_mean[0], self.running_var[0], self.weight[0], self.bias[0],
                                self.training, self.momentum, self.eps)
        # (M*B, F) -> (B, M*F): one BatchNorm over M*F channels, i.e. each member's features over its own rows
        xm = x.reshape(self.members, -1, x.shape[-1]).transpose(0, 1).reshape(-1, self.members * x.shape[-1])
        out = F.batch_norm(xm, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                           self.bias.view(-1), self.training, self.momentum, self.eps)
        return out.reshape(-1, self.members, x.shape[-1]).transpose(0, 1).reshape(x.shape)


#: The layers :func:`stack` knows how to batch, and their batched versions.
BATCHED = {nn.Linear: BatchedLinear, nn.BatchNorm1d: BatchedBatchNorm1d}


def _check_stackable(models: Sequence[nn.Module]) -> None:
    if not models:
        raise ValueError("an ensemble needs at least one model")
    first = models[0]
    for m in models[1:]:
        if type(m) is not type(first) or repr(m) != repr(first) or repr(getattr(m, "init_args", None)) != repr(
                getattr(first, "init_args", None)):
            raise ValueError(f"ensemble members must be built alike; {type(m).__name__} differs from the first")
    stateful = [f"{name or 'model'} ({type(m).__name__})" for name, m in first.named_modules()
                if type(m) not in BATCHED
                and (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)))]
    if stateful:
        raise ValueError(f"only {', '.join(c.__name__ for c in BATCHED)} layers can be stacked; these modules hold "
                         f"weights or buffers: {stateful}")
    if any(opt.state for opt in optimisers(first)):
        raise ValueError("stack fresh models: the optimisers of the first model have already taken steps")


def stack(models: Sequence[nn.Module]) -> nn.Module:
    """One model that trains ``models`` (built alike, e.g. one per seed) together; see the module docstring.

    The result is a copy of the first model with every ``nn.Linear`` replaced by a :class:`BatchedLinear` and every
    optimiser it holds rebuilt, with the same settings, over the stacked parameters.
    """
    _check_stackable(models)
    stacked = copy.deepcopy(models[0])
    replaced: dict[int, nn.Parameter] = {}
    for name, module in list(stacked.named_modules()):
        if type(module) in BATCHED:
            batched = BATCHED[type(module)]([m.get_submodule(name) for m in models])
            replaced[id(module.weight)] = batched.weight
            if module.bias is not None:
                replaced[id(module.bias)] = batched.bias
            parent, _, child = name.rpartition(".")  # (nn.Module.set_submodule is newer than the torch floor)
            setattr(stacked.get_submodule(parent), child, batched.train(module.training))
    for module in stacked.modules():
        for attr, opt in list(vars(module).items()):
            if isinstance(opt, torch.optim.Optimizer):
                groups = [{**g, "params": [replaced[id(p)] for p in g["params"]]} for g in opt.param_groups]
                setattr(module, attr, type(opt)(groups, **opt.defaults))
    for module in stacked.modules():  # modules that average over a minibatch learn where each member's rows are
        if isinstance(getattr(type(module), "members", None), int):
            module.members = len(models)
    if len(models) > 1:  # a loss averaged over M*B rows gives each member 1/M of its own gradient
        for p in stacked.parameters():
            p.register_hook(lambda g, m=len(models): g * m)
    return stacked


@torch.no_grad()
def unstack_into(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy each member's weights out of a :func:`stack`-ed model into its own model."""
    for name, module in stacked.named_modules():
        if isinstance(module, tuple(BATCHED.values())):
            if module.members != len(models):
                raise ValueError(f"the ensemble has {module.members} members, got {len(models)} models")
            for i, m in enumerate(models):
                layer = m.get_submodule(name)
                for key, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                    getattr(layer, key).copy_(value[i])
