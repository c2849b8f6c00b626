"""Reading an operator's policy files without trusting what sits at their paths.

A path may hold a FIFO nobody writes (``open`` would block the reloading thread for ever), a device that
never ends (``/dev/zero``: the read would take every byte of memory), a file of gigabytes, or bytes that
are not UTF-8. Each of those is a ``PolicyError`` here, so the caller keeps its last good policy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_MODULE_BYTES = 4 << 20  # the shipped policy is 5 KB; a module a thousand times larger is not a policy
MAX_DATA_BYTES = 16 << 20


class PolicyFileError(ValueError):
    """A policy file cannot be read as text (engine.PolicyError wraps it with the same message)."""


def read_text(path: Path, limit: int) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes; PolicyFileError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PolicyFileError(f"{path}: not a regular file")
        try:
            raw = file.read(limit + 1)
        except OSError as exc:
            raise PolicyFileError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise PolicyFileError(f"{path}: larger than {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
