"""Reading the log, its index and its tree from another process (the API), without ever writing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from audit.chain import AuditPaths
from audit.index import LineIndex, read_line
from audit.merkle import MerkleStore


class AuditReader:
    """A read-only view; entries past ``size`` may be half-written and are never read."""

    def __init__(self, log: Path) -> None:
        self.paths = AuditPaths(log)
        self._fd = os.open(log, os.O_RDONLY)
        self.index = LineIndex(self.paths.index, writable=False)
        self.tree = MerkleStore.open_read_only(self.paths.tree)

    def close(self) -> None:
        os.close(self._fd)
        self.index.close()
        self.tree.close()

    def __enter__(self) -> "AuditReader":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    @property
    def size(self) -> int:
        return min(self.index.size, self.tree.size)

    def line(self, i: int) -> bytes:
        if not 0 <= i < self.size:
            raise IndexError(i)
        return read_line(self._fd, self.index, i)

    def entries(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        for i in range(max(0, start), min(end, self.size)):
            yield i, self.line(i)

