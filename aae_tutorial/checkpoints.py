"""Checkpoints that are never stale and never fatal.

* The key of a checkpoint covers everything that decides the trained weights: the model's constructor arguments
  (which it keeps as plain data: :class:`aae_tutorial.nets.RecordsInit`), its architecture and optimiser settings,
  the source code of the model, of the training step and of the training loop (which the loop passes in), a
  digest of the training data, the run's config and its mode.
* A checkpoint is written to a temporary file of its own, fsynced, then renamed into place, so two processes that
  train the same model never mix their files.
* An unreadable checkpoint is moved aside as ``*.corrupt`` with a warning that names it, and the caller retrains.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import types
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from . import nets, priors, recipes, steps
from .data import cache_dir
from .files import UnwritableFolder, atomic_write, check_name

#: Package modules whose code shapes every model: a change to any of them retrains.
SHARED_MODULES = (nets, steps, priors, recipes)


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
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    _DIGESTS[id(t)] = (weakref.ref(t, lambda _, i=id(t): _DIGESTS.pop(i, None)), t._version, h.hexdigest())
    return h.hexdigest()


def _optimiser_settings(opt: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's settings (learning rate, betas, ...), as they stand now, not as constructed."""
    skip = ("params", "capturable", "differentiable", "foreach", "fused")
    return [{k: v for k, v in group.items() if k not in skip} for group in opt.param_groups]


def _optimisers(model: nn.Module) -> dict[str, list[dict]]:
    """Every optimiser held as an attribute of ``model`` or of its submodules, with its settings."""
    return {f"{prefix}.{name}".lstrip("."): _optimiser_settings(opt) for prefix, module in model.named_modules()
            for name, opt in sorted(vars(module).items()) if isinstance(opt, torch.optim.Optimizer)}


def _code(code: types.CodeType) -> list:
    """What a function's code does and reads, and where it is defined (a line, so that two steps written alike in
    different places differ), without the addresses of nested code objects."""
    consts = [_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_qualname if hasattr(code, "co_qualname") else code.co_name, code.co_firstlineno,
            code.co_code.hex(), consts, list(code.co_names)]


def fingerprint(value: object, seen: frozenset[int] = frozenset()) -> object:
    """A JSON-able fingerprint of something a training step reads.

    Tensors by digest; modules by their weights and optimiser settings; optimisers by their settings; functions by
    their code, code position and what they read, closed-over values and globals alike, followed through wrappers
    (e.g. :func:`aae_tutorial.engine.autocast`); other objects by their attributes.
    """
    if value is None or isinstance(value, (str, int, float, bool, torch.dtype, torch.device)):
        return repr(value)
    if isinstance(value, Tensor):
        return tensor_digest(value)
    if isinstance(value, (types.ModuleType, type)):
        return f"{type(value).__name__} {getattr(value, '__module__', '')}.{value.__name__}"
    if id(value) in seen or len(seen) > 8:
        return "..."
    seen = seen | {id(value)}
    if isinstance(value, nn.Module):
        return {"weights": {k: tensor_digest(v) for k, v in value.state_dict().items()},
                "optimisers": _optimisers(value), "init_args": fingerprint(getattr(value, "init_args", None), seen)}
    if isinstance(value, torch.optim.Optimizer):
        return _optimiser_settings(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [fingerprint(v, seen) for v in value]
    if isinstance(value, dict):
        return {repr(k): fingerprint(v, seen) for k, v in value.items()}
    if isinstance(value, types.MethodType):
        return {"method": fingerprint(value.__func__, seen), "of": fingerprint(value.__self__, seen)}
    if isinstance(value, functools.partial):
        return {"partial": fingerprint(value.func, seen), "args": fingerprint(value.args, seen),
                "keywords": fingerprint(value.keywords, seen)}
    if isinstance(value, types.FunctionType):
        code = value.__code__
        closure = dict(zip(code.co_freevars, (c.cell_contents for c in value.__closure__ or ())))
        read = {n: value.__globals__[n] for n in code.co_names if n in value.__globals__}
        if value.__module__ and value.__module__.startswith("aae_tutorial"):
            read = {n: v for n, v in read.items() if not callable(v)}  # the package's code is keyed by its source
        return {"code": _code(code), "closure": fingerprint(closure, seen), "globals": fingerprint(read, seen),
                "defaults": fingerprint(value.__defaults__, seen)}
    if hasattr(value, "__dict__"):
        return {"object": f"{type(value).__module__}.{type(value).__qualname__}",
                "attributes": fingerprint(vars(value), seen)}
    return repr(value)


def key(name: str, model: nn.Module, step: Callable, data: Sequence[Tensor], config: dict, mode: str,
        loop: Sequence[Callable] = ()) -> str:
    """A 16-hex-digit digest of everything that decides the weights a run produces: besides the code, the data and
    the config, the model's starting weights and optimiser settings, what the step reads, and the random state the
    run starts from (its data order and noise). ``loop`` are the functions of the training loop that decide the
    weights (data order, epoch loop), passed by the loop itself: a change to them retrains too."""
    classes = [c for c in type(model).__mro__ if c.__module__.startswith("aae_tutorial")]
    sources = [_source(c) for c in classes] + [_source(m) for m in SHARED_MODULES] + [
        _source(f) for f in loop] + [_source(step)]
    parts = {
        "name": name, "mode": mode, "config": config,
        "init_args": getattr(model, "init_args", None), "architecture": repr(model),
        "model": fingerprint(model), "step": fingerprint(step),
        "source": hashlib.sha256("\n".join(sources).encode()).hexdigest(),
        "data": [tensor_digest(t) for t in data],
        "random_state": hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest(),
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


#: What a checkpoint's metadata holds (written by :func:`aae_tutorial.train.fit`; ``ensemble`` is optional), and
#: what its training history holds.
META_FIELDS, HISTORY_FIELDS = {"history", "mode", "device", "wall_time_s"}, {"epochs", "losses", "metrics"}
#: Optional metadata: the ensemble size, and the key the checkpoint was written under (:func:`key`).
OPTIONAL_META = {"ensemble", "key"}


def check_meta(meta: object) -> dict:
    """The metadata of a checkpoint, if it has the shape :func:`aae_tutorial.train.fit` writes; else ValueError."""
    if not isinstance(meta, dict) or not META_FIELDS <= set(meta) <= META_FIELDS | OPTIONAL_META:
        raise ValueError(f"its metadata has fields {sorted(meta) if isinstance(meta, dict) else type(meta).__name__},"
                         f" not {sorted(META_FIELDS)}")
    history = meta["history"]
    if not isinstance(history, dict) or set(history) != HISTORY_FIELDS or not isinstance(history["epochs"], int) \
            or not all(isinstance(history[k], dict) for k in ("losses", "metrics")):
        raise ValueError(f"its training history is not {sorted(HISTORY_FIELDS)}")
    if not isinstance(meta["wall_time_s"], (int, float)) or not all(isinstance(meta[k], str) for k in ("mode", "device")):
        raise ValueError("its mode, device or wall time has the wrong type")
    return dict(meta)


def set_aside(path: Path, error: BaseException) -> Path:
    """Move an unusable checkpoint (a file or a folder alike) to a unique ``*.corrupt`` name beside it; returns it."""
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.corrupt")
    try:
        os.replace(path, aside)
    except OSError as e:
        raise UnwritableFolder(f"checkpoint {path} is unusable ({type(error).__name__}: {str(error)[:120]}) and "
                               f"cannot be set aside: {e.strerror or e} in {path.parent}. Delete it, or set "
                               "AAE_CACHE_DIR to a folder you can write to, and run again") from e
    return aside


def load(path: Path, model: nn.Module, expected_key: str | None = None) -> dict | None:
    """Load the weights at ``path`` into ``model`` and return the metadata; ``None`` if there is no checkpoint.

    ``weights_only=True``: no code is unpickled. A checkpoint carries the key it was written under; with
    ``expected_key`` one written under another key (copied or linked to this path) is not loaded. An unreadable,
    incomplete, non-finite or foreign checkpoint, or something other than a file at the path (a folder, a FIFO),
    leaves ``model`` as it was, is renamed to ``*.corrupt`` with a warning naming both files, and ``None`` is returned.
    """
    if not path.exists() and not path.is_symlink():
        return None
    backup = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        if not path.is_file():
            raise ValueError("it is not a regular file")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if expected_key is not None and payload["meta"].get("key") != expected_key:
            raise ValueError(f"it was written under key {payload['meta'].get('key')!r}, not {expected_key!r}")
        model.load_state_dict(payload["model"])
        if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
            raise ValueError("it holds non-finite weights")
        return check_meta(payload["meta"])
    except Exception as e:  # noqa: BLE001 - any failure to read means: set it aside and retrain
        model.load_state_dict(backup)
        aside = set_aside(path, e)
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        warnings.warn(f"checkpoint {path} is unreadable ({type(e).__name__}: {reason}); "
                      f"moved it to {aside} and training again", stacklevel=2)
        return None
