"""Checkpoints that are never stale and never fatal.

* The key of a checkpoint covers everything that decides the trained weights: the model's constructor arguments
  (recorded by :class:`RecordsInit`), its architecture and optimiser settings, the source code of the model, of the
  training step and of the training loop, a digest of the training data, the run's config and its mode.
* A checkpoint is written to a temporary file of its own, fsynced, then renamed into place, so two processes that
  train the same model never mix their files.
* An unreadable checkpoint is moved aside as ``*.corrupt`` with a warning that names it, and the caller retrains.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .data import cache_dir
from .files import atomic_write, check_name

#: Package modules whose code shapes every model: a change to any of them retrains.
SHARED_MODULES = ("aae_tutorial.nets", "aae_tutorial.steps", "aae_tutorial.priors", "aae_tutorial.recipes")
#: The parts of the training loop that decide the weights (data order, epoch loop): a change to them retrains too.
LOOP_FUNCTIONS = ("aae_tutorial.train:order_generator", "aae_tutorial.train:minibatches", "aae_tutorial.train:_train")


class RecordsInit:
    """Mixin that keeps the arguments a model was constructed with in ``self.init_args`` (for checkpoint keys)."""

    init_args: dict

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw) -> None:
            if "init_args" not in self.__dict__:  # the outermost constructor records
                bound = inspect.signature(init).bind(self, *args, **kw)
                bound.apply_defaults()
                self.__dict__["init_args"] = {k: v for k, v in list(bound.arguments.items())[1:]}
            init(self, *args, **kw)

        cls.__init__ = recording_init


def _source(obj) -> str:
    """Source code of a class, function or module; the bytecode where the source is not available."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr((code.co_code, code.co_consts)) if code is not None else repr(obj)


_DIGESTS: dict[int, tuple[weakref.ref, int, str]] = {}


def tensor_digest(t: Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and values; remembered for as long as this very tensor is unchanged."""
    cached = _DIGESTS.get(id(t))
    if cached is not None and cached[0]() is t and cached[1] == t._version:
        return cached[2]
    h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    _DIGESTS[id(t)] = (weakref.ref(t, lambda _, i=id(t): _DIGESTS.pop(i, None)), t._version, h.hexdigest())
    return h.hexdigest()


def _optimisers(model: nn.Module) -> dict[str, dict]:
    """Every optimiser held as an attribute of ``model``, with its settings (learning rate, betas, ...)."""
    return {name: {k: v for k, v in opt.defaults.items() if k not in ("capturable", "differentiable", "foreach", "fused")}
            for name, opt in sorted(vars(model).items()) if isinstance(opt, torch.optim.Optimizer)}


def key(name: str, model: nn.Module, step: Callable, data: Sequence[Tensor], config: dict, mode: str) -> str:
    """A 16-hex-digit digest of everything that decides the weights a run produces."""
    classes = [c for c in type(model).__mro__ if c.__module__.startswith("aae_tutorial")]
    loop = [getattr(importlib.import_module(m), f) for m, f in (spec.split(":") for spec in LOOP_FUNCTIONS)]
    sources = [_source(c) for c in classes] + [_source(importlib.import_module(m)) for m in SHARED_MODULES] + [
        _source(f) for f in loop] + [_source(step)]
    parts = {
        "name": name, "mode": mode, "config": config,
        "init_args": getattr(model, "init_args", None), "architecture": repr(model), "optimisers": _optimisers(model),
        "source": hashlib.sha256("\n".join(sources).encode()).hexdigest(),
        "data": [tensor_digest(t) for t in data],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def path_for(name: str, digest: str) -> Path:
    """``$AAE_CACHE_DIR/checkpoints/<name>-<digest>.pt``; ``name`` must be a plain file-name stem, so that no run
    writes outside the cache."""
    check_name(name, "a run's name")
    return cache_dir() / "checkpoints" / f"{name}-{digest}.pt"


def save(path: Path, model: nn.Module, meta: dict) -> None:
    """Write the state dict and metadata atomically (:func:`aae_tutorial.files.atomic_write`)."""
    atomic_write(path, lambda f: torch.save({"model": model.state_dict(), "meta": meta}, f))


def load(path: Path, model: nn.Module) -> dict | None:
    """Load the weights at ``path`` into ``model`` and return the metadata; ``None`` if there is no checkpoint.

    ``weights_only=True``: no code is unpickled. An unreadable, incomplete or non-finite checkpoint leaves ``model``
    as it was, is renamed to ``*.corrupt`` with a warning naming both files, and ``None`` is returned.
    """
    if not path.exists():
        return None
    backup = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
            raise ValueError("it holds non-finite weights")
        return dict(payload["meta"])
    except Exception as e:  # noqa: BLE001 - any failure to read means: set it aside and retrain
        model.load_state_dict(backup)
        fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".corrupt")
        os.close(fd)
        os.replace(path, aside)
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        warnings.warn(f"checkpoint {path} is unreadable ({type(e).__name__}: {reason}); "
                      f"moved it to {aside} and training again", stacklevel=2)
        return None
