"""Training: device choice, seeding, and one entry point, :func:`fit`, that every chapter uses.

``fit`` trains a model with a chapter's ``step`` unless a checkpoint of exactly that run exists (see
:mod:`aae_tutorial.checkpoints`). The data stay on the device: a minibatch is an index tensor, and losses are summed
on the device and read once per epoch. How a step runs (eagerly, or captured whole as a CUDA graph) is decided by
:mod:`aae_tutorial.engine`, which the chapters never need to read.
"""
from __future__ import annotations

import copy
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

from . import checkpoints, checks, engine, ensemble, recipes
from .priors import Prior
from .data import LabelledSet, check_images
from .history import History, Run
from .mode import RunMode, describe_device


Step = Callable[[Tensor], dict[str, Tensor]]
EpochCallback = Callable[[int], dict[str, float]]


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


def _train(step: Step, model: nn.Module, n: int, epochs: int, batch_size: int, device: torch.device | str,
           orders: Sequence[torch.Generator], callbacks: Sequence[EpochCallback | None], desc: str,
           members: Sequence[nn.Module] = ()) -> list[History]:
    """The epoch loop: ``step`` on every minibatch, one read of the summed losses per epoch, a finite check.

    With one data order this trains ``model`` alone. With M orders, ``model`` is an ensemble
    (:func:`aae_tutorial.ensemble.stack` of ``members``): each minibatch holds each member's own ``batch_size`` rows,
    and the members' weights are copied out before their ``callbacks`` run. A progress bar shows the epochs unless
    ``AAE_PROGRESS=0`` (as in the executed book, which cannot render it).
    """
    histories = [History() for _ in orders]
    recipe = getattr(model, "recipe", None)  # its rate schedule (recipes.Recipe.lr_drops), if the model has one
    schedules = recipe.schedules(engine.optimisers(model, step)) if recipe is not None else []
    runner, lrs = None, None
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=os.environ.get("AAE_PROGRESS") == "0")
    for epoch in bar:
        if runner is None or [s.get_last_lr() for s in schedules] != lrs:  # a captured graph holds the old rate
            runner, lrs = engine.StepRunner(step, model, device, desc), [s.get_last_lr() for s in schedules]
        for idx in zip(*(minibatches(n, batch_size, device, g) for g in orders)):
            runner(torch.cat(idx) if len(idx) > 1 else idx[0])
        means = runner.epoch_means(n // batch_size)
        bad = sorted(k for k, v in means.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLossError(f"{desc}: the {', '.join(bad)} loss became {means[bad[0]]} in epoch {epoch + 1}; "
                                     "training stopped and nothing was saved (lower the learning rates, or check "
                                     "the data)")
        if members:
            ensemble.unstack_into(model, members)
        for history, member, callback in zip(histories, members or [model], callbacks):
            History.log(history.losses, means)
            if callback is not None:
                member.eval()
                metrics = callback(epoch)
                if not isinstance(metrics, dict):
                    raise TypeError(f"{desc}: on_epoch_end must return a dict of metrics, e.g. "
                                    f"{{'valid_error': 3.1}}; got {type(metrics).__name__}")
                History.log(history.metrics, metrics)
                member.train()
            history.epochs = epoch + 1
        recipes.end_epoch(schedules)
        bar.set_postfix({k: f"{v:.3g}" for k, v in histories[0].last().items()})
    return histories


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
        raise TypeError(f"mode must be a RunMode, e.g. mode.run_mode() or RunMode('quick', 'why'), got {mode!r}")
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


def _loaded(name: str, config: dict, meta: dict, model: nn.Module) -> Run:
    history = History(**meta["history"])
    return Run(name, config, history, meta["mode"], meta["device"], history.epochs, meta["wall_time_s"], True,
               meta.get("ensemble", 1), getattr(model, "recipe", None))


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


def _save(path: Path | None, model: nn.Module, run: Run, key: str | None) -> None:
    """Checkpoint a finished run, after checking that its weights are finite: a loss is read before its update, so
    the last update can break the weights of a run whose losses all were finite. No ``path``: no checkpoint."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteWeightsError(f"{run.name}: non-finite weights after training ({', '.join(bad[:3])}"
                                    f"{', ...' if len(bad) > 3 else ''}) although every loss was finite; nothing was "
                                    "saved (lower the learning rates, or check the step)")
    if path is None:
        return
    meta = {"history": asdict(run.history), "mode": run.mode, "device": run.device, "wall_time_s": run.wall_time_s,
            "ensemble": run.ensemble, "key": key}
    try:
        checkpoints.save(path, model, meta)
    except (OSError, RuntimeError) as e:  # a full disk, a read-only cache: keep the trained run, say what failed
        warnings.warn(f"{run.name}: could not write its checkpoint {path} ({type(e).__name__}: "
                      f"{str(e).strip()[:200]}); the trained weights are kept in memory only, and a rerun trains "
                      "again (free space, or point AAE_CACHE_DIR at a writable folder)", stacklevel=3)


def _finish(run: Run) -> Run:
    _log_run(run)
    print(run.describe())
    return run


def fit(name: str, model: nn.Module, step: Step, data: Tensor | Sequence[Tensor], epochs: int, mode: RunMode,
        device: torch.device | str, *, config: dict | None = None, batch_size: int = 100,
        on_epoch_end: EpochCallback | None = None) -> Run:
    """Train ``model`` for ``epochs`` passes of ``step(batch_indices)``, or load the checkpoint of this exact run.

    ``data`` are the tensors ``step`` reads; the first holds the training images (N, 784) in [0, 1], and an epoch is
    one pass over its N examples. The checkpoint key covers the model, the step's code, ``data``, ``config`` and the
    mode, so changing any of them trains anew. ``step`` does one minibatch update and returns its losses as 0-d
    tensors. ``on_epoch_end(epoch)`` may return metrics to log (e.g. a validation error); the model is in eval mode
    while it runs. Prints what happened and returns the :class:`Run`.
    """
    data, device = _checked(data, epochs, batch_size, mode), checks.device(device)
    config = {**(config or {}), "epochs": epochs, "batch_size": batch_size}
    _check_priors(name, model, device)
    path, key = _checkpoint(name, model, step, data, config, mode)
    meta = checkpoints.load(path, model, key) if path else None
    state = random_state()
    if meta is not None:
        run = _loaded(name, config, meta, model)
    else:
        model.train()
        start = time.perf_counter()
        history, = _train(step, model, len(data[0]), epochs, batch_size, device, [order_generator(device)],
                          [on_epoch_end], name)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        run = Run(name, config, history, mode.name, describe_device(device), epochs, time.perf_counter() - start,
                  recipe=getattr(model, "recipe", None))
        set_random_state(state)
        _save(path, model, run, key)
    model.eval()
    return _finish(run)


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
    ensemble (:func:`aae_tutorial.ensemble.stack`): one step updates every member's model.

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
    config = {**(config or {}), "epochs": epochs, "batch_size": batch_size}
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
        path, key = _checkpoint(member.name, model, step, used, cfg, mode)
        start_weights = copy.deepcopy(model.state_dict()) if len(members) > 1 else None
        meta = checkpoints.load(path, model, key) if path else None
        state = random_state()  # restored at the end: trained or loaded, the same state is left behind
        built.append((member, model, (path, key), start_weights, order_generator(device)))
        if meta is not None:
            model.eval()
            out[member.name] = model, _loaded(member.name, cfg, meta, model)
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
        batched = ensemble.stack(models).train()
        labelled = [member.labelled for member, *_ in todo]
        stacked = None if labelled[0] is None else LabelledSet.stack(labelled)
        start = time.perf_counter()
        histories = _train(make_step(batched, stacked), batched, len(data[0]), epochs, batch_size, device,
                           [g for *_, g in todo], [on_epoch_end and on_epoch_end(m) for m in models],
                           ", ".join(member.name for member, *_ in todo), models)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        share = (time.perf_counter() - start) / len(models)
        for (member, model, (path, key), _, _), history in zip(todo, histories):
            run = Run(member.name, {"seed": member.seed, **config}, history, mode.name, describe_device(device),
                      epochs, share, ensemble=len(models), recipe=getattr(model, "recipe", None))
            _save(path, model, run, key)
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
