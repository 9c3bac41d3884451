"""Files written so that a crash or a second writer never leaves a half-written or mixed file behind."""
from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not on Windows: there, writers of one folder are not serialised
    fcntl = None

#: A file-name stem the package writes: letters, digits, '_', '-' and '.', starting with a letter or digit.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(name: str, what: str) -> None:
    """Refuse a name that is not a plain file-name stem (no folder, no '..', not empty), naming ``what`` it is."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} is letters, digits, '_', '-' and '.', with no '/' and no '..'; got {name!r}")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself, so no lock file is left behind): writers
    that check a file and then replace it do both without another writer in between."""
    folder.mkdir(parents=True, exist_ok=True)
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


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file of this writer's own beside ``path``, fsync it, rename it into place.
    Temporary files of ``path`` left by killed writers (older than :data:`ORPHAN_AGE_S`) are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # another writer may remove it first
            if time.time() - orphan.stat().st_mtime > ORPHAN_AGE_S:
                orphan.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
