"""Files written so that a crash or a second writer never leaves a half-written or mixed file behind."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not on Windows: there, writers of one folder are not serialised
    fcntl = None

#: A file-name stem the package writes: letters, digits, '_', '-' and '.', starting with a letter or digit.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


#: The longest name the package writes a file under: file systems allow 255 bytes, and a checkpoint adds a key.
MAX_NAME = 160


def check_name(name: str, what: str) -> None:
    """Refuse a name that is not a plain file-name stem (no folder, no '..', not empty, at most :data:`MAX_NAME`
    characters), naming ``what`` it is."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} is letters, digits, '_', '-' and '.', with no '/' and no '..'; got {name!r}")
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} is at most {MAX_NAME} characters (a file name); got {len(name)}: {name[:40]!r}...")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself, so no lock file is left behind): writers
    that check a file and then replace it do both without another writer in between."""
    make_folder(folder)
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


#: A temporary file this old was left by a writer that was killed (no save takes this long): it is removed.
ORPHAN_AGE_S = 3600


class UnwritableFolder(OSError):
    """A folder the package must write into cannot be made or written; the message names it and the remedy."""


#: Where each kind of file goes, for the remedy an :class:`UnwritableFolder` names.
FOLDER_SETTINGS = "AAE_RESULTS_DIR for records, AAE_CACHE_DIR for checkpoints"


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if need be; :class:`UnwritableFolder` where a file stands in the way or the
    file system refuses."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocking} is a file, not a folder" if blocking else e.strerror or type(e).__name__
        raise UnwritableFolder(f"cannot use {folder} as a folder: {why}. Point the setting at a folder you can "
                               f"write to ({FOLDER_SETTINGS}), or remove what is there") from e


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file of this writer's own beside ``path``, fsync it, rename it into place.
    Temporary files of ``path`` left by killed writers (older than :data:`ORPHAN_AGE_S`) are removed first. A folder
    that cannot be made or written raises :class:`UnwritableFolder`, naming it."""
    make_folder(path.parent)
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # another writer may remove it first
            if time.time() - orphan.stat().st_mtime > ORPHAN_AGE_S:
                orphan.unlink()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UnwritableFolder(f"cannot write {path}: the folder {path.parent} refuses new files ({e.strerror or e}). "
                               f"Make it writable, or point the setting at a folder you can write to "
                               f"({FOLDER_SETTINGS})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path | str, what: str) -> Path:
    """Refuse, before any work is done, a path that cannot take a file: empty, a folder, or in a folder that cannot be
    created or written. Returns the path."""
    if not str(path).strip():
        raise ValueError(f"{what} must name a file, got an empty path")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; name a file in it, e.g. {path / 'record.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what}: cannot create the folder {path.parent} ({e.strerror})") from e
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{what}: the folder {path.parent} is not writable; name a file in a folder you can write to")
    return path


def read_json(path: Path, shape: Callable[[object], bool], what: str) -> object | None:
    """The JSON at ``path`` if ``shape`` accepts it; ``None`` if there is no file. A file that cannot be read or has
    another shape (corrupt, or written by an older version) is moved aside to a unique ``*.corrupt`` name with a
    warning naming both, and counts as none."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
        if not shape(value):
            raise ValueError("it does not have the expected shape")
        return value
    except (OSError, UnicodeDecodeError, ValueError) as e:
        aside = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.corrupt")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        warnings.warn(f"{what} {path} is unusable ({type(e).__name__}: {str(e)[:120]}); set it aside as {aside} and "
                      "ignored it", stacklevel=3)
        return None
