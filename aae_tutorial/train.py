"""Training: device choice, seeding, and one loop, :func:`fit`, that trains every run of the course: the chapters',
the run command's and its searches'.

``fit`` trains a model with a chapter's ``step`` unless a checkpoint of exactly that run exists (see
:mod:`aae_tutorial.checkpoints`). A single run checkpoints every few minutes and after its last epoch (weights,
optimiser and schedule states, random states, history, the best epoch so far), so a killed run resumes and ends bit for
bit where an uninterrupted one ends (on the CPU), and one asked for more epochs later trains on. The data stay on the
device: a minibatch is an index tensor, and losses are summed on the device and read once per epoch. How a step runs
(eagerly, as a CUDA graph, in bf16) is decided by :mod:`aae_tutorial.engine`, which the chapters never need to read.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import checkpoints, checks, engine, recipes
from .priors import Prior
from .data import LabelledSet, check_images
from .history import History, Run
from .experiments import RunMode


Step = Callable[[Tensor], dict[str, Tensor]]
EpochCallback = Callable[[int], dict[str, float]]
#: Seconds between the checkpoints of a single run while it trains; one is written after its last epoch too.
CHECKPOINT_EVERY_S = 120.0
#: How :func:`fit` shows its epochs: a progress bar, a printed line per epoch (after its checkpoint: for logs), or
#: nothing. Unset, a bar, or nothing where ``AAE_PROGRESS=0`` (the executed book, which cannot render one).
PROGRESS = ("bar", "lines", "off")


@dataclass
class Best:
    """Model selection on validation: the epoch (1-based) whose ``metric``, returned by ``on_epoch_end``, was the best
    so far, and its weights. The test images are never looked at."""

    metric: str
    higher_is_better: bool = False
    epoch: int = 0
    value: float | None = None
    weights: dict[str, Tensor] | None = None

    def see(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        if self.metric not in metrics:
            raise KeyError(f"model selection reads {self.metric!r} from on_epoch_end, which returned {sorted(metrics)}")
        value = float(metrics[self.metric])
        if self.value is None or (value > self.value if self.higher_is_better else value < self.value):
            self.epoch, self.value, self.weights = epoch, value, copy.deepcopy(model.state_dict())


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite: training stopped and nothing was saved."""


class NonFiniteWeightsError(NonFiniteLossError):
    """Weights became NaN or infinite although every logged loss was finite (e.g. in the last update): nothing was
    saved."""


def pick_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """A short human-readable name: ``cuda (NVIDIA H100 80GB HBM3)``, ``mps`` or ``cpu``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_state() -> tuple[Tensor, list[Tensor]]:
    """The global random state of torch: the CPU generator's and every initialised CUDA device's."""
    return torch.random.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []


def set_random_state(state: tuple[Tensor, list[Tensor]]) -> None:
    """Restore :func:`random_state`: a run leaves the random state as it found it, trained or loaded alike, so the
    cells after it draw the same numbers on a first run and on a rerun from checkpoints."""
    torch.random.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def order_generator(device: torch.device | str) -> torch.Generator:
    """The random generator of one run's data order, seeded from the global RNG (so :func:`seed_everything` fixes
    it) and separate from it (so members of an ensemble keep the order their single runs would see)."""
    seed = int(torch.randint(2**62, (), dtype=torch.int64))
    return torch.Generator(device=device).manual_seed(seed)


def minibatches(n: int, batch_size: int, device: torch.device | str,
                generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Index tensors for one epoch over ``n`` examples in a fresh random order drawn on ``device``; the last
    incomplete batch is dropped, so every step sees ``batch_size`` examples."""
    if batch_size < 1 or n < batch_size:
        raise ValueError(f"need 1 <= batch_size <= n, got batch_size={batch_size}, n={n}")
    order = torch.randperm(n, device=device, generator=generator)
    for i in range(0, n - n % batch_size, batch_size):
        yield order[i : i + batch_size]


def _schedules(model: nn.Module, step: Step) -> tuple[list[torch.optim.Optimizer], list]:
    """The optimisers ``step`` updates and their rate schedules (the model's recipe's ``lr_drops``, if it has one)."""
    optimisers = engine.optimisers(model, step)
    recipe = getattr(model, "recipe", None)
    return optimisers, recipe.schedules(optimisers) if recipe is not None else []


def _train(step: Step, model: nn.Module, n: int, epochs: int, batch_size: int, device: torch.device | str,
           orders: Sequence[torch.Generator], callbacks: Sequence[EpochCallback | None], desc: str,
           schedules: Sequence, histories: Sequence[History], members: Sequence[nn.Module] = (), *,
           best: Best | None = None, checkpoint: Callable[[], None] | None = None,
           every: float = CHECKPOINT_EVERY_S, progress: str = "bar") -> None:
    """The epoch loop: ``step`` on every minibatch, one read of the summed losses per epoch, a finite check. It goes
    on from ``histories``' epochs (a resumed run) to ``epochs``, logging into them.

    With one data order this trains ``model`` alone: ``best`` then follows the validation metric and ``checkpoint()``
    is called every ``every`` seconds. With M orders, ``model`` is an ensemble (:func:`aae_tutorial.engine.stack`
    of ``members``): each minibatch holds each member's own ``batch_size`` rows, and the members' weights are copied
    out before their ``callbacks`` run.
    """
    runner, lrs, saved_at = None, None, time.monotonic()
    done = histories[0].epochs
    bar = tqdm(range(done, epochs), desc=desc, unit="epoch", initial=done, total=epochs, disable=progress != "bar")
    for epoch in bar:
        if runner is None or [s.get_last_lr() for s in schedules] != lrs:  # a captured graph holds the old rate
            runner, lrs = engine.StepRunner(step, model, device, desc), [s.get_last_lr() for s in schedules]
        for idx in zip(*(minibatches(n, batch_size, device, g) for g in orders)):
            runner(torch.cat(idx) if len(idx) > 1 else idx[0])
        means = runner.epoch_means(n // batch_size)
        bad = sorted(k for k, v in means.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLossError(f"{desc}: the {', '.join(bad)} loss became {means[bad[0]]} in epoch {epoch + 1}; "
                                     "training stopped, and nothing after the last checkpoint was saved (lower the "
                                     "learning rates, or check the data)")
        if members:
            engine.unstack_into(model, members)
        for history, member, callback in zip(histories, members or [model], callbacks):
            History.log(history.losses, means)
            if callback is not None:
                member.eval()
                metrics = callback(epoch)
                if not isinstance(metrics, dict):
                    raise TypeError(f"{desc}: on_epoch_end must return a dict of metrics, e.g. "
                                    f"{{'valid_error': 3.1}}; got {type(metrics).__name__}")
                History.log(history.metrics, metrics)
                if best is not None:
                    best.see(epoch + 1, metrics, member)
                member.train()
            history.epochs = epoch + 1
        recipes.end_epoch(schedules)
        if checkpoint is not None and (epoch + 1 == epochs or time.monotonic() - saved_at >= every):
            checkpoint()
            saved_at = time.monotonic()
        last = histories[0].last()
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()})
        if progress == "lines":
            chosen = f" (best {best.value:.4g} at {best.epoch})" if best is not None else ""
            print(f"{desc} epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items())
                  + chosen, flush=True)


#: The parts of this loop that decide the weights (data order, epoch loop): checkpoint keys cover their code.
LOOP = (order_generator, minibatches, _train)


def _log_run(run: Run) -> None:
    """Append the run to ``$AAE_RUN_LOG`` (JSON lines) when set: how the full-course command counts model-epochs."""
    if log := os.environ.get("AAE_RUN_LOG"):
        with open(log, "a") as f:
            f.write(json.dumps({"name": run.name, "epochs": run.epochs, "wall_time_s": round(run.wall_time_s, 2),
                                "from_checkpoint": run.from_checkpoint, "mode": run.mode, "device": run.device}) + "\n")


def _checked(data: Tensor | Sequence[Tensor], epochs: int, batch_size: int, mode: RunMode) -> tuple[Tensor, ...]:
    if not isinstance(mode, RunMode):
        raise TypeError(f"mode must be a RunMode, e.g. experiments.run_mode() or RunMode('quick', 'why'), got {mode!r}")
    data = (data,) if isinstance(data, Tensor) else tuple(data)
    if not data:
        raise ValueError("data must hold at least the training images")
    check_images(data[0], "the training images (data[0])")
    n = len(data[0])
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an int in 1..{n} (the number of training images), got {batch_size!r}")
    return data


def _check_priors(name: str, model: nn.Module, device: torch.device) -> None:
    """A prior that samples on another device than the one training runs on fails inside the step with torch's
    words; say it here, with the fix."""
    for attr, prior in vars(model).items():
        if isinstance(prior, Prior) and (prior.device.type != device.type or None not in (
                prior.device.index, device.index) and prior.device.index != device.index):
            raise ValueError(f"{name}: the model's prior ({attr}, {prior!r}) samples on {prior.device}, but training "
                             f"runs on {device}; build it on the training device, e.g. "
                             f"{type(prior).__name__}(..., device=device)")


def _loaded(name: str, config: dict, meta: dict, model: nn.Module, best: Best | None) -> Run:
    """The :class:`Run` of a finished checkpoint, with ``model`` holding its weights (the picked epoch's, with
    ``best``)."""
    history = History(**meta["history"])
    if best is not None:
        _restore_best(best, meta, model)
        model.load_state_dict(best.weights)
    return Run(name, config, history, meta["mode"], meta["device"], history.epochs, meta["wall_time_s"], True,
               meta.get("ensemble", 1), getattr(model, "recipe", None), best.epoch if best else None)


def _checkpoint(name: str, model: nn.Module, step: Step, data: Sequence[Tensor], config: dict,
                mode: RunMode) -> tuple[Path | None, str | None]:
    """The checkpoint path and key of a run; ``(None, None)``, said aloud, where the key cannot see all the step
    reads: then the run trains and saves nothing, so that no edit is ever missed."""
    try:
        key = checkpoints.key(name, model, step, data, config, mode.name, LOOP)
    except checkpoints.UnsureKey as e:
        print(f"{name}: {e}")
        return None, None
    return checkpoints.path_for(name, key), key


def _check_finite(name: str, model: nn.Module) -> None:
    """A loss is read before its update, so the last update can break the weights of a run whose losses all were
    finite: such weights are never saved."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteWeightsError(f"{name}: non-finite weights after training ({', '.join(bad[:3])}"
                                    f"{', ...' if len(bad) > 3 else ''}) although every loss was finite; nothing "
                                    "more was saved (lower the learning rates, or check the step)")


def _save(path: Path | None, model: nn.Module, name: str, meta: dict) -> None:
    """Checkpoint a run's weights and ``meta`` (:data:`aae_tutorial.checkpoints.META_FIELDS`), after checking that
    they are finite. No ``path``: no checkpoint."""
    _check_finite(name, model)
    if path is None:
        return
    try:
        checkpoints.save(path, model, meta)
    except (OSError, RuntimeError) as e:  # a full disk, a read-only cache: keep the trained run, say what failed
        warnings.warn(f"{name}: could not write its checkpoint {path} ({type(e).__name__}: "
                      f"{str(e).strip()[:200]}); the trained weights are kept in memory only, and a rerun trains "
                      "again (free space, or point AAE_CACHE_DIR at a writable folder)", stacklevel=3)


def _resume_state(optimisers: Sequence, schedules: Sequence, order: torch.Generator) -> dict:
    """What a checkpoint holds, besides the weights and history, to go on training exactly where the run stands."""
    rng, cuda_rng = random_state()
    return {"optimisers": [o.state_dict() for o in optimisers], "schedules": [s.state_dict() for s in schedules],
            "rng": rng, "cuda_rng": cuda_rng, "order": order.get_state()}


def _resume(saved: dict, optimisers: Sequence, schedules: Sequence, order: torch.Generator) -> None:
    """Restore :func:`_resume_state` into the optimisers, schedules and generators."""
    for part, saved_parts in ((optimisers, saved["optimisers"]), (schedules, saved["schedules"])):
        for obj, state in zip(part, saved_parts, strict=True):
            obj.load_state_dict(state)
    set_random_state((saved["rng"], saved["cuda_rng"] if torch.cuda.is_available() else []))
    order.set_state(saved["order"])


def _restore_best(best: Best, meta: dict, model: nn.Module) -> None:
    """The selection a checkpoint holds (a run checkpointed without one picks its last epoch)."""
    saved = meta.get("best") or {"epoch": meta["history"]["epochs"], "value": None, "weights": model.state_dict()}
    best.epoch, best.value = saved["epoch"], saved["value"]
    best.weights = {k: v.clone() for k, v in saved["weights"].items()}


def _finish(run: Run) -> Run:
    _log_run(run)
    print(run.describe())
    return run


def fit(name: str, model: nn.Module, step: Step, data: Tensor | Sequence[Tensor], epochs: int, mode: RunMode,
        device: torch.device | str, *, config: dict | None = None, batch_size: int = 100,
        on_epoch_end: EpochCallback | None = None, select: Best | None = None, precision: torch.dtype | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY_S, progress: str | None = None) -> Run:
    """Train ``model`` for ``epochs`` passes of ``step(batch_indices)``, or load the checkpoint of this exact run.

    ``data`` are the tensors ``step`` reads; the first holds the training images (N, 784) in [0, 1], and an epoch is
    one pass over its N examples. The checkpoint key covers the model, the step's code, ``data``, ``config``, the
    precision and the mode, so changing any of them trains anew; a checkpoint of fewer epochs trains on to ``epochs``,
    one of more trains anew. ``step`` does one minibatch update and returns its losses as 0-d tensors.
    ``on_epoch_end(epoch)`` may return metrics to log (e.g. a validation error); the model is in eval mode while it
    runs. With ``select`` (a :class:`Best`), the model ends with the weights of the epoch it picks. ``precision``
    (e.g. ``torch.bfloat16``) runs the step under autocast. Prints what happened and returns the :class:`Run`.
    """
    data, device = _checked(data, epochs, batch_size, mode), checks.device(device)
    progress = progress or ("off" if os.environ.get("AAE_PROGRESS") == "0" else "bar")
    if progress not in PROGRESS:
        raise ValueError(f"progress must be one of {PROGRESS}, got {progress!r}")
    if precision not in (None, torch.bfloat16):
        raise ValueError(f"precision must be None (fp32) or torch.bfloat16, got {precision!r}")
    config = {**(config or {}), "batch_size": batch_size, **({"precision": str(precision)} if precision else {})}
    _check_priors(name, model, device)
    path, key = _checkpoint(name, model, step, data, config, mode)  # not the epochs: a longer run trains on
    config = {**config, "epochs": epochs}
    start_weights = copy.deepcopy(model.state_dict()) if path is not None and path.exists() else None
    meta = checkpoints.load(path, model, key) if path else None
    state = random_state()
    done = meta["history"]["epochs"] if meta else 0
    if meta is not None and done == epochs:
        run = _loaded(name, config, meta, model, select)
    else:
        optimisers, schedules = _schedules(model, step)
        order = order_generator(device)
        history, wall_before = History(), 0.0
        if meta is not None and done < epochs and "resume" in meta:
            _resume(meta["resume"], optimisers, schedules, order)
            history, wall_before = History(**meta["history"]), meta["wall_time_s"]
            if select is not None:
                _restore_best(select, meta, model)
            print(f"{name}: resumed from its checkpoint after epoch {done} of {epochs}")
        elif meta is not None:
            print(f"{name}: its checkpoint holds {done} epochs, not the {epochs} asked; training anew")
            model.load_state_dict(start_weights)
        start, wall = time.perf_counter(), [wall_before]

        def save() -> None:  # called after the last epoch too: the run's wall time is the one it saves
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            wall[0] = wall_before + time.perf_counter() - start
            if path is None:
                return _check_finite(name, model)
            meta = {"history": asdict(history), "mode": mode.name, "device": describe_device(device),
                    "wall_time_s": wall[0], "key": key, "resume": _resume_state(optimisers, schedules, order)}
            if select is not None:
                meta["best"] = {"epoch": select.epoch, "value": select.value, "weights": select.weights}
            _save(path, model, name, meta)

        model.train()
        _train(engine.autocast(step, device, precision), model, len(data[0]), epochs, batch_size, device, [order],
               [on_epoch_end], name, schedules, [history], best=select, checkpoint=save, every=checkpoint_every,
               progress=progress)
        run = Run(name, config, history, mode.name, describe_device(device), epochs, wall[0],
                  recipe=getattr(model, "recipe", None),
                  selected_epoch=select.epoch if select else None)
        if select is not None:
            model.load_state_dict(select.weights)
        set_random_state(state)
    model.eval()
    return _finish(dataclasses.replace(run, precision="bf16" if precision == torch.bfloat16 else "fp32"))


@dataclass(frozen=True)
class Member:
    """One run of an ensemble trained by :func:`fit_together`: its name, its seed and, for the semi-supervised
    steps, its own labelled set."""

    name: str
    seed: int
    labelled: LabelledSet | None = None


def fit_together(members: Sequence[Member], make_model: Callable[[Member], nn.Module],
                 make_step: Callable[[nn.Module, LabelledSet | None], Step], data: Tensor | Sequence[Tensor],
                 epochs: int, mode: RunMode, device: torch.device | str, *, config: dict | None = None,
                 batch_size: int = 100,
                 on_epoch_end: Callable[[nn.Module], EpochCallback] | None = None) -> list[tuple[nn.Module, Run]]:
    """:func:`fit` once per member, with the runs that are not yet checkpointed trained together as one batched
    ensemble (:func:`aae_tutorial.engine.stack`): one step updates every member's model.

    For each member the global RNG is seeded with its seed, ``make_model(member)`` builds the model and
    ``make_step(model, member.labelled)`` its step, as a chapter would for one run; the ensemble's step is
    ``make_step(ensemble, LabelledSet.stack(...))``, so each member draws its labelled rows from its own set. The
    members' models must be built alike. Each keeps its own initial weights, data order, checkpoint and
    :class:`Run`; ``on_epoch_end(model)`` makes each model's callback. A single member trains exactly as :func:`fit`
    does, bit for bit; the logged losses of an ensemble are its members' means.
    """
    data, device = _checked(data, epochs, batch_size, mode), checks.device(device)
    names = [m.name for m in members]
    if not members or len(set(names)) != len(names):
        raise ValueError(f"the members' names must be distinct and at least one, got {names}")
    config = {**(config or {}), "batch_size": batch_size}
    if len(members) > 1:
        config["trained_with"] = names
    built = []  # every member: (member, model, (checkpoint path, key), its starting weights, its data order)
    out: dict[str, tuple[nn.Module, Run]] = {}
    for member in members:
        seed_everything(member.seed)
        model = make_model(member)
        step = make_step(model, member.labelled)
        cfg = {"seed": member.seed, **config}
        used = data if member.labelled is None else (*data, member.labelled.x, member.labelled.y)
        _check_priors(member.name, model, device)
        path, key = _checkpoint(member.name, model, step, used, cfg, mode)  # not the epochs, as in fit
        start_weights = copy.deepcopy(model.state_dict())
        meta = checkpoints.load(path, model, key) if path else None
        if meta is not None and meta["history"]["epochs"] != epochs:  # an ensemble's member does not train on
            print(f"{member.name}: its checkpoint holds {meta['history']['epochs']} epochs, not the {epochs} asked; "
                  "training anew")
            model.load_state_dict(start_weights)
            meta = None
        state = random_state()  # restored at the end: trained or loaded, the same state is left behind
        built.append((member, model, (path, key), start_weights, order_generator(device)))
        if meta is not None:
            model.eval()
            out[member.name] = model, _loaded(member.name, {**cfg, "epochs": epochs}, meta, model, None)
    todo = [b for b in built if b[0].name not in out]
    if todo and len(todo) < len(built):
        # an ensemble stopped part-way through saving: a member trained alone would not get the weights it gets
        # beside the others, so the whole ensemble trains again, each member from its starting weights
        print(f"{len(built) - len(todo)} of {len(built)} members were saved before an interrupt; the ensemble "
              "trains again whole, so that every member gets the weights it would have had uninterrupted")
        for _, model, _, start_weights, _ in built:
            model.load_state_dict(start_weights)
        todo = built
        out.clear()
    for _, run in out.values():  # the loaded members, said once it is known that they stay loaded
        _finish(run)
    if todo:
        models = [model for _, model, _, _, _ in todo]
        batched = engine.stack(models).train()
        labelled = [member.labelled for member, *_ in todo]
        stacked = None if labelled[0] is None else LabelledSet.stack(labelled)
        step = make_step(batched, stacked)
        histories = [History() for _ in todo]
        start = time.perf_counter()
        _train(step, batched, len(data[0]), epochs, batch_size, device, [g for *_, g in todo],
               [on_epoch_end and on_epoch_end(m) for m in models], ", ".join(member.name for member, *_ in todo),
               _schedules(batched, step)[1], histories, models)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        share = (time.perf_counter() - start) / len(models)
        for (member, model, (path, key), _, _), history in zip(todo, histories):
            run = Run(member.name, {"seed": member.seed, **config, "epochs": epochs}, history, mode.name,
                      describe_device(device), epochs, share, ensemble=len(models),
                      recipe=getattr(model, "recipe", None))
            _save(path, model, member.name, {"history": asdict(history), "mode": run.mode, "device": run.device,
                                             "wall_time_s": share, "ensemble": len(models), "key": key})
            model.eval()
            out[member.name] = model, _finish(run)
    set_random_state(state)
    return [out[name] for name in names]


def fit_seeds(name: str, make_model: Callable[[], nn.Module], make_step: Callable[[nn.Module], Step],
              seeds: Sequence[int], data: Tensor | Sequence[Tensor], epochs: int, mode: RunMode,
              device: torch.device | str, *, config: dict | None = None, batch_size: int = 100,
              on_epoch_end: Callable[[nn.Module], EpochCallback] | None = None) -> list[tuple[nn.Module, Run]]:
    """:func:`fit_together` for the seeds of one run: the models ``make_model()`` and their steps
    ``make_step(model)``, named ``<name>-seed<seed>``."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
    return fit_together([Member(f"{name}-seed{seed}", seed) for seed in seeds], lambda member: make_model(),
                        lambda model, _: make_step(model), data, epochs, mode, device, config=config,
                        batch_size=batch_size, on_epoch_end=on_epoch_end)
