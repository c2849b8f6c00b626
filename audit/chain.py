"""The append side of the audit log: one writer, group commit, torn-tail repair, duplicate suppression."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from audit.entry import GENESIS, decode_line, encode_line, make_entry


@dataclass
class Head:
    """Where the chain stands: the next seq, the last hash, the last channel event id written."""

    next_seq: int = 0
    hash: str = GENESIS
    event_id: str = "0-0"


def stream_id_key(event_id: str) -> tuple[int, int]:
    """Redis stream ids ("ms-n") compare as pairs of integers, not as strings."""
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)


class AuditChain:
    """Appends entries to a JSON Lines file; the only writer of that file.

    ``append_batch`` writes a batch and fsyncs once (group commit) before returning, so the caller can
    acknowledge the batch's events to the channel only once they are durable. Events whose channel id
    is not newer than the last one written are duplicates from a redelivery and are skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        self.repaired_bytes = 0
        self.head = self._recover()

    def close(self) -> None:
        os.close(self._fd)

    def _recover(self) -> Head:
        """Find the last whole entry; cut a torn partial line left by a crash mid-write."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return Head()
        tail, start = self._tail(size)
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n") + 1
            os.ftruncate(self._fd, start + cut)
            os.fsync(self._fd)
            self.repaired_bytes = len(tail) - cut
            tail = tail[:cut]
        lines = tail.splitlines()
        if not lines:
            return Head()
        last = decode_line(lines[-1])
        return Head(next_seq=last["seq"] + 1, hash=last["hash"], event_id=last.get("event_id", "0-0"))

    def _tail(self, size: int, block: int = 65536) -> tuple[bytes, int]:
        """The end of the file holding at least one whole line (or the whole file), and its offset."""
        start = size
        data = b""
        while start > 0:
            start = max(0, start - block)
            data = os.pread(self._fd, size - start, start)
            if data.count(b"\n") >= 2:
                break
        return data, start

    def append_batch(self, events: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Seal and durably write ``(event_id, event)`` pairs in order; return the entries written."""
        written: list[dict[str, Any]] = []
        buffer = bytearray()
        head = Head(self.head.next_seq, self.head.hash, self.head.event_id)
        for event_id, event in events:
            if stream_id_key(event_id) <= stream_id_key(head.event_id):
                continue
            entry = make_entry(head.next_seq, head.hash, event, event_id)
            buffer += encode_line(entry)
            written.append(entry)
            head = Head(head.next_seq + 1, entry["hash"], event_id)
        if buffer:
            os.write(self._fd, bytes(buffer))
            os.fsync(self._fd)
            self.head = head
        return written
