"""Checkpoints that are never stale and never fatal.

* The key of a checkpoint covers everything that decides the trained weights, wherever it is defined (this package,
  a notebook, a learner's own module): the code of every function and class the step can reach, followed down every
  call, and every value they read (closed-over values, globals, defaults, tensors and arrays in full), the model's
  starting weights, settings and optimisers, the training loop (which the loop passes in), the data, the run's
  config and its mode. Installed libraries count by their version. Where the step reads a value the key cannot see
  into, the run trains and saves nothing (:class:`UnsureKey`).
* A checkpoint is written to a temporary file of its own, fsynced, then renamed into place, so two processes that
  train the same model never mix their files.
* An unreadable checkpoint is moved aside as ``*.corrupt`` with a warning that names it, and the caller retrains.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import sysconfig
import types
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data import cache_dir
from .files import UnwritableFolder, atomic_write, check_name

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


def _code(code: types.CodeType) -> list:
    """What a function's code does and reads, and where it is defined (a line, so that two steps written alike in
    different places differ), without the addresses of nested code objects."""
    consts = [_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_qualname if hasattr(code, "co_qualname") else code.co_name, code.co_firstlineno,
            code.co_code.hex(), consts, list(code.co_names)]


def _names(code: types.CodeType) -> list[str]:
    """Every global or attribute name a function's code reads, its nested functions' and comprehensions' too."""
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += [n for n in _names(c) if n not in names]
    return names


_LIBRARY_PATHS = tuple(sorted({os.path.realpath(p) for k, p in sysconfig.get_paths().items()
                               if k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def _library(module_name: str | None) -> str | None:
    """``"<package> <version>"`` if ``module_name`` belongs to an installed library or Python itself (keyed by its
    version, not read); ``None`` for code a learner can edit: this package, a notebook, a module of their own."""
    top = (module_name or "").partition(".")[0]
    if not top or top in ("__main__", __package__):
        return None
    module = sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if module is not None and path is not None and not os.path.realpath(path).startswith(_LIBRARY_PATHS):
        return None
    return f"{top} {getattr(module, '__version__', sys.version.split()[0])}"


class UnsureKey(Exception):
    """The checkpoint key cannot see all that decides the weights: a checkpoint must neither be reused nor saved."""


#: Attributes of a class body that say nothing of what it does (``__slotnames__``: the cache that pickling or copying
#: an instance leaves on its class, e.g. when an earlier run saved its checkpoint).
_CLASS_NOISE = {"__dict__", "__weakref__", "__module__", "__doc__", "__qualname__", "__firstlineno__",
                "__static_attributes__", "__annotations__", "__orig_bases__", "__parameters__", "_abc_impl",
                "__slotnames__"}


#: What every torch module holds (its parameters, buffers, submodules, hooks and mode), walked otherwise or not at all.
_MODULE_INTERNALS = set(vars(nn.Module()))


class _Fingerprint:
    """One key's walk over what a step can reach. Values met twice are walked once (and kept alive, so that no
    other object takes their id meanwhile); a value met again inside itself is marked as a cycle."""

    def __init__(self) -> None:
        self.memo: dict[int, tuple[object, object]] = {}
        self.path: set[int] = set()

    def __call__(self, value: object, where: str) -> object:
        if value is None or isinstance(value, (str, int, float, bool, complex, bytes, torch.dtype, torch.device)):
            return repr(value)
        if isinstance(value, Tensor):
            return tensor_digest(value)
        if isinstance(value, np.ndarray):
            return hashlib.sha256(f"{value.dtype} {value.shape}".encode() + np.ascontiguousarray(value).tobytes()
                                  ).hexdigest() if value.dtype != object else [self(v, where) for v in value.flat]
        if isinstance(value, np.generic):
            return repr(value)
        if id(value) in self.memo:
            return self.memo[id(value)][1]
        if id(value) in self.path:
            return f"<cycle: {type(value).__qualname__}>"
        self.path.add(id(value))
        try:
            found = self._walk(value, where)
        finally:
            self.path.discard(id(value))
        self.memo[id(value)] = (value, found)
        return found

    def _function(self, f: types.FunctionType, where: str) -> object:
        if library := _library(f.__module__):
            return f"function {f.__module__}.{f.__qualname__} ({library})"
        code, names = f.__code__, _names(f.__code__)
        closure = {n: c.cell_contents if _filled(c) else "<unassigned>"
                   for n, c in zip(code.co_freevars, f.__closure__ or ())}
        read = {n: f.__globals__[n] for n in names if n in f.__globals__}
        # a module the function reads: what it takes from there (``helpers.noise``), named by the same code
        taken = {f"{n}.{a}": getattr(m, a) for n, m in read.items() if isinstance(m, types.ModuleType)
                 and _library(m.__name__) is None for a in names if hasattr(m, a)}
        return {"code": _code(code), "closure": self(closure, f"{where} > closure"),
                "globals": self(read, f"{where} > globals"), "from modules": self(taken, f"{where} > modules"),
                "defaults": self((f.__defaults__, f.__kwdefaults__), f"{where} > defaults")}

    def _class(self, cls: type, where: str) -> object:
        if library := _library(cls.__module__):
            return f"class {cls.__module__}.{cls.__qualname__} ({library})"
        body = {k: v for k, v in vars(cls).items() if k not in _CLASS_NOISE}
        return {"class": cls.__qualname__, "bases": self(cls.__bases__, f"{where} > bases"),
                "body": self(body, f"{where} > {cls.__qualname__}")}

    def _walk(self, value: object, where: str) -> object:
        if isinstance(value, types.ModuleType):
            return f"module {value.__name__} ({_library(value.__name__) or 'read by name'})"
        if isinstance(value, type):
            return self._class(value, where)
        if isinstance(value, nn.Module):
            modules = dict(value.named_modules())
            return {"weights": {k: tensor_digest(v) for k, v in value.state_dict().items()},
                    "classes": {k: self(type(m), f"{where} > {k or 'model'}") for k, m in modules.items()},
                    "attributes": {k: self({a: v for a, v in vars(m).items() if a not in _MODULE_INTERNALS},
                                           f"{where} > {k or 'model'}") for k, m in modules.items()}}
        if isinstance(value, torch.optim.Optimizer):
            return _optimiser_settings(value)
        if isinstance(value, torch.Generator):
            return tensor_digest(value.get_state())
        if isinstance(value, (list, tuple)):
            return [self(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, (set, frozenset)):
            return sorted((self(v, f"{where} item") for v in value), key=lambda v: json.dumps(v, default=repr))
        if isinstance(value, dict):
            return [[self(k, f"{where} key"), self(v, f"{where}[{k!r}]")] for k, v in value.items()]
        if isinstance(value, types.MethodType):
            return {"method": self(value.__func__, where), "of": self(value.__self__, f"{where} > self")}
        if isinstance(value, functools.partial):
            return {"partial": self(value.func, where), "args": self(value.args, where),
                    "keywords": self(value.keywords, where)}
        if isinstance(value, types.FunctionType):
            return self._function(value, f"{where} > {value.__qualname__}")
        if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                              types.MethodWrapperType, types.MethodDescriptorType)):
            owner = getattr(value, "__self__", None)
            module = getattr(value, "__module__", None) or type(owner).__module__
            return {"builtin": f"{module}.{getattr(value, '__qualname__', value.__name__)} ({_library(module)})",
                    "of": None if owner is None or isinstance(owner, (types.ModuleType, type))
                    else self(owner, f"{where} > self")}
        named = getattr(value, "__qualname__", None)
        if callable(value) and isinstance(named, str) and (library := _library(getattr(value, "__module__", None))):
            return f"function {value.__module__}.{named} ({library})"  # a library's function object (np.mean)
        if hasattr(value, "__dict__") or hasattr(type(value), "__slots__"):
            slots = [a for c in type(value).__mro__ for a in getattr(c, "__slots__", ()) if hasattr(value, a)]
            state = {**{a: getattr(value, a) for a in slots}, **getattr(value, "__dict__", {})}
            return {"object": self(type(value), where), "attributes": self(state, where)}
        text = repr(value)
        if " at 0x" in text or "..." in text or text.startswith("<"):
            raise UnsureKey(f"the step reads a {type(value).__qualname__} ({where}), whose value the checkpoint key "
                            "cannot read: it trains, and saves no checkpoint. To make it reusable, hold that value as "
                            "numbers, a tensor, an array, or an object of such attributes")
        return {"value": text, "type": self(type(value), where)}


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a closure variable not yet assigned
        return False
    return True


def fingerprint(value: object, where: str = "the step") -> object:
    """A JSON-able fingerprint of something a training step reads, followed wherever it leads.

    Tensors and arrays by their bytes; modules by their weights, the code of their classes and their attributes
    (optimisers by their settings); functions by their code, code position and everything they read, closed-over
    values, defaults, globals and what they take from a module, followed through wrappers (e.g.
    :func:`aae_tutorial.engine.autocast`) and down every call; objects by their class's code and their attributes;
    installed libraries by name and version. A value it cannot read raises :class:`UnsureKey`.
    """
    return _Fingerprint()(value, where)


def key(name: str, model: nn.Module, step: Callable, data: Sequence[Tensor], config: dict, mode: str,
        loop: Sequence[Callable] = ()) -> str:
    """A 16-hex-digit digest of everything that decides the weights a run produces: the model (its starting weights,
    the code of its classes, its settings and optimisers), the step and all it can reach (:func:`fingerprint`), the
    data, the config, the mode, and the random state the run starts from (its data order and noise). ``loop`` are the
    functions of the training loop that decide the weights (data order, epoch loop), passed by the loop itself: a
    change to their code retrains too (their code only: the loop's own machinery, checkpoints included, is not
    walked). Raises :class:`UnsureKey` where the step reads a value it cannot see into."""
    walk = _Fingerprint()
    parts = {
        "name": name, "mode": mode, "config": walk(config, "the run's config"), "architecture": repr(model),
        "model": walk(model, "the model"), "step": walk(step, "the step"), "loop": [_code(f.__code__) for f in loop],
        "data": [tensor_digest(t) for t in data],
        "random_state": hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


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
#: Optional metadata: the ensemble size, the key the checkpoint was written under (:func:`key`), what a single run
#: needs to train on (optimiser, schedule and random states) and the epoch validation picked, with its weights.
OPTIONAL_META = {"ensemble", "key", "resume", "best"}
RESUME_FIELDS, BEST_FIELDS = {"optimisers", "schedules", "rng", "cuda_rng", "order"}, {"epoch", "value", "weights"}


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
    for part, fields in (("resume", RESUME_FIELDS), ("best", BEST_FIELDS)):
        if part in meta and (not isinstance(meta[part], dict) or set(meta[part]) != fields):
            raise ValueError(f"its {part} state is not {sorted(fields)}")
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
