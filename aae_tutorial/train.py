"""GPU-aware training plumbing: device choice, seeding, the epoch loop, and checkpoints that skip retraining.

The loop keeps everything on the device: batches are index tensors into device-resident data, per-step losses are
summed on the device, and the host reads them once per epoch (one sync per epoch, none per step).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import cache_dir
from .mode import RunMode, describe_device


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


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has one for the parameters' device, else the foreach one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


def minibatches(n: int, batch_size: int, device: torch.device | str, drop_last: bool = True) -> Iterator[Tensor]:
    """Index tensors for one epoch over ``n`` examples, in a fresh random order drawn on ``device``."""
    if batch_size < 1 or n < batch_size:
        raise ValueError(f"need 1 <= batch_size <= n, got batch_size={batch_size}, n={n}")
    order = torch.randperm(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield order[i : i + batch_size]


@dataclass
class History:
    """Per-epoch means of every loss a step returns, plus any per-epoch metrics a callback adds."""

    epochs: int = 0
    losses: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def log(self, store: dict[str, list[float]], values: dict[str, float]) -> None:
        for k, v in values.items():
            store.setdefault(k, []).append(float(v))

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in {**self.losses, **self.metrics}.items() if v}


def fit(step: Callable[[Tensor], dict[str, Tensor]], n: int, epochs: int, batch_size: int = 100, *,
        device: torch.device | str = "cpu", on_epoch_end: Callable[[int], dict[str, float]] | None = None,
        desc: str = "training") -> History:
    """Run ``epochs`` passes of ``step(batch_indices)`` over ``n`` examples and return the loss history.

    ``step`` does one minibatch update and returns its losses as 0-d tensors, which are summed on the device and
    read once per epoch. ``on_epoch_end(epoch)`` may return extra metrics (e.g. a validation error) to log.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    history = History()
    steps_per_epoch = n // batch_size
    bar = tqdm(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        sums: dict[str, Tensor] = {}
        for idx in minibatches(n, batch_size, device):
            for k, v in step(idx).items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach().clone()
        means = dict(zip(sums, (torch.stack(list(sums.values())) / steps_per_epoch).tolist()))  # one sync per epoch
        history.log(history.losses, means)
        if on_epoch_end is not None:
            history.log(history.metrics, on_epoch_end(epoch))
        history.epochs = epoch + 1
        bar.set_postfix({k: f"{v:.3g}" for k, v in history.last().items()})
    return history


@dataclass
class Run:
    """What a training run produced and where: the provenance every result in the book carries."""

    name: str
    config: dict
    history: History
    mode: str
    device: str
    epochs: int
    wall_time_s: float
    from_checkpoint: bool = False

    def provenance(self) -> dict:
        return {"mode": self.mode, "device": self.device, "epochs": self.epochs, "wall_time_s": round(self.wall_time_s, 1)}

    def describe(self) -> str:
        how = "loaded from checkpoint" if self.from_checkpoint else "trained now"
        return (f"{self.name}: {how}; mode={self.mode}, device={self.device}, epochs={self.epochs}, "
                f"wall time {self.wall_time_s:.1f} s")


def checkpoint_path(name: str, config: dict) -> Path:
    """``$AAE_CACHE_DIR/checkpoints/<name>-<hash of config>.pt``: a new config never reuses an old checkpoint."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / "checkpoints" / f"{name}-{key}.pt"


def _fingerprint(modules: dict[str, nn.Module]) -> dict[str, str]:
    """Architecture and optimiser settings of each module, so that changing either never reuses a checkpoint."""
    out = {}
    for key, m in modules.items():
        optimisers = {k: {h: v.defaults[h] for h in ("lr", "betas") if h in v.defaults}
                      for k, v in sorted(vars(m).items()) if isinstance(v, torch.optim.Optimizer)}
        out[key] = f"{m!r} {optimisers}"
    return out


def save_checkpoint(path: Path, modules: dict[str, nn.Module], meta: dict) -> None:
    """Write state dicts and metadata atomically: to a temporary file first, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"modules": {k: m.state_dict() for k, m in modules.items()}, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, modules: dict[str, nn.Module]) -> dict:
    """Load state dicts into ``modules`` (``weights_only=True``: no code is unpickled); return the metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for k, m in modules.items():
        m.load_state_dict(payload["modules"][k])
    return payload["meta"]


def train_or_load(name: str, config: dict, modules: dict[str, nn.Module], train: Callable[[], History],
                  mode: RunMode, device: torch.device | str) -> Run:
    """Train with ``train()`` unless a checkpoint for exactly this ``config`` exists, in which case load it.

    Either way the returned :class:`Run` carries the provenance of the run that produced the weights.
    """
    path = checkpoint_path(name, {**config, "mode": mode.name, "modules": _fingerprint(modules)})
    if path.exists():
        meta = load_checkpoint(path, modules)
        history = History(meta["history"]["epochs"], meta["history"]["losses"], meta["history"]["metrics"])
        return Run(name, config, history, meta["mode"], meta["device"], meta["epochs"], meta["wall_time_s"], True)
    start = time.perf_counter()
    history = train()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    run = Run(name, config, history, mode.name, describe_device(device), history.epochs,
              time.perf_counter() - start)
    save_checkpoint(path, modules, {"history": asdict(history), **run.provenance(), "wall_time_s": run.wall_time_s})
    return run


def fit_or_load(name: str, model: nn.Module, config: dict, step: Callable[[Tensor], dict[str, Tensor]], n: int,
                epochs: int, mode: RunMode, device: torch.device | str, batch_size: int = 100,
                on_epoch_end: Callable[[int], dict[str, float]] | None = None) -> Run:
    """:func:`fit` a model with ``step`` unless a checkpoint of the same name and config exists; print what happened."""
    run = train_or_load(name, {**config, "epochs": epochs, "batch_size": batch_size}, {"model": model},
                        lambda: fit(step, n, epochs, batch_size, device=device, on_epoch_end=on_epoch_end, desc=name),
                        mode, device)
    print(run.describe())
    return run
