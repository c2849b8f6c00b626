"""Where each entry's line starts in the log: 8-byte offsets, so entry i is one read away."""

from __future__ import annotations

import os
import struct
from pathlib import Path

RECORD = struct.Struct("<Q")


class LineIndex:
    def __init__(self, path: Path, writable: bool = True) -> None:
        self.path = path
        if writable:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            whole = os.fstat(self._fd).st_size // RECORD.size * RECORD.size
            os.ftruncate(self._fd, whole)
        else:
            self._fd = os.open(path, os.O_RDONLY)
        self._pending = bytearray()

    def close(self) -> None:
        os.close(self._fd)

    @property
    def size(self) -> int:
        return (os.fstat(self._fd).st_size + len(self._pending)) // RECORD.size

    def offset(self, index: int) -> int:
        data = os.pread(self._fd, RECORD.size, index * RECORD.size)
        if len(data) != RECORD.size:
            raise IndexError(index)
        return RECORD.unpack(data)[0]

    def append(self, offset: int) -> None:
        self._pending += RECORD.pack(offset)

    def flush(self, fsync: bool = True) -> None:
        """Write buffered records; with ``fsync=False`` they stay unsynced until a later ``flush()``."""
        if self._pending:
            os.pwrite(self._fd, bytes(self._pending), os.fstat(self._fd).st_size)
            self._pending.clear()
        if fsync:
            os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        self._pending.clear()
        os.ftruncate(self._fd, size * RECORD.size)
        os.fsync(self._fd)


def read_line(log_fd: int, index: LineIndex, i: int) -> bytes:
    """Line ``i`` of the log without its newline (raises IndexError beyond the index)."""
    start = index.offset(i)
    try:
        end = index.offset(i + 1)
        data = os.pread(log_fd, end - start, start)
    except IndexError:
        data = b""
        chunk = 65536
        while not data.endswith(b"\n"):
            more = os.pread(log_fd, chunk, start + len(data))
            if not more:
                break
            data += more
            cut = data.find(b"\n")
            if cut >= 0:
                data = data[:cut + 1]
    return data.rstrip(b"\n")
