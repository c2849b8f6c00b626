"""Owner-only key files that several processes may create at once.

The ingress's workers, the lane workers and the audit writer start together, so on a fresh directory
they race to create the same key. The key is written to a temporary file (mode 0600, fsynced) and
hard-linked into place: the link either appears whole or fails because another process's key is
already there, in which case that one is kept. A reader never sees a half-written key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of the key at ``path``, first created from ``make()`` if there is none; refused with
    PermissionError when group or others may read it (its directory is made 0700 on creation)."""
    if not path.exists():
        _create_once(path, make())
    return read_private(path)


def read_private(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


def _create_once(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process's key won: keep it
    finally:
        os.unlink(tmp)
