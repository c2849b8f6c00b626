"""The append side of the audit log: one writer, group commit, torn-tail repair, duplicate suppression.

Beside the log (the source of truth) the writer keeps a line index and the Merkle tree's stored nodes.
A batch is durable once the log is fsynced, which ``append_batch`` does before it returns. The index
and the tree are derived from the log: each batch writes them at once (readers see them through the
page cache), but fsyncs them at most every ``sync_interval_s``, and then records in a small mark file
how many entries they hold durably. One fsync per batch instead of two plus one per tree level is what
lets appends keep up with signing. On opening, whatever the files hold past the mark is cut and
derived again from the log's whole lines, so a crash between syncs costs a re-hash of at most one
interval's entries and never leaves a stale or torn node behind.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from audit.entry import GENESIS, decode_line, seal_entry
from audit.index import LineIndex, read_line
from audit.merkle import MerkleStore, leaf_hash


@dataclass
class Head:
    """Where the chain stands: the next seq, the last hash, the last channel event id written."""

    next_seq: int = 0
    hash: str = GENESIS
    event_id: str = "0-0"


@dataclass(frozen=True)
class AuditPaths:
    """The files of one audit log; everything but the log itself lives in the log's directory."""

    log: Path

    @property
    def directory(self) -> Path:
        return self.log.parent

    @property
    def index(self) -> Path:
        return self.directory / "index" / "offsets.bin"

    @property
    def tree(self) -> Path:
        return self.directory / "tree"

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def synced_mark(self) -> Path:
        return self.directory / "index" / "synced"


_MARK = struct.Struct("<QI")  # entries the index and tree hold durably, CRC-32 of those 8 bytes


class SyncMark:
    """How many entries the derived files (index, tree) hold durably; absent or unreadable means none
    is known. Logs written before the mark existed fsynced those files with every batch, so a log
    without a mark file is trusted as it stands (``read`` returns None only for that case)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._existed = path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)

    def close(self) -> None:
        os.close(self._fd)

    def read(self) -> int | None:
        data = os.pread(self._fd, _MARK.size, 0)
        if len(data) != _MARK.size:
            return None if not self._existed else 0
        size, check = _MARK.unpack(data)
        return size if zlib.crc32(data[:8]) == check else 0

    def write(self, size: int) -> None:
        """One sector-sized write and an fsync: the mark is either the old value or the new one."""
        packed = struct.pack("<Q", size)
        os.pwrite(self._fd, packed + struct.pack("<I", zlib.crc32(packed)), 0)
        os.fsync(self._fd)
        if not self._existed:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._existed = True


def stream_id_key(event_id: str) -> tuple[int, int]:
    """Redis stream ids ("ms-n") compare as pairs of integers, not as strings."""
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)


class LogBusy(RuntimeError):
    """Another process holds the log open for writing (its exclusive lock on the file)."""


Quarantine = Callable[[str, Any, str], dict[str, Any]]


def _refuse(event_id: str, event: Any, reason: str) -> dict[str, Any]:
    raise ValueError(f"event {event_id} cannot be written: {reason}")


class AuditChain:
    """Appends entries to a JSON Lines file; the only writer of that file.

    ``append_batch`` writes a batch and fsyncs before returning, so the caller can acknowledge the
    batch's events to the channel only once they are durable. Events whose channel id is not newer than
    the last one written are duplicates from a redelivery and are skipped.
    """

    def __init__(self, path: Path, signer: Any | None = None, *, sync_interval_s: float = 1.0) -> None:
        self.paths = AuditPaths(path)
        self.signer = signer
        self.sync_interval_s = sync_interval_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LogBusy(f"{path} is held by another writer") from None
        self.repaired_bytes = 0
        self.head = self._recover()
        self.index = LineIndex(self.paths.index)
        self.tree = MerkleStore(self.paths.tree)
        self.mark = SyncMark(self.paths.synced_mark)
        self._sync_indexes()
        self.mark.write(self.index.size)  # _sync_indexes fsynced both files
        self._next_sync = time.monotonic() + sync_interval_s

    def close(self) -> None:
        self.sync()
        os.close(self._fd)  # closing the descriptor releases the writer's lock on the file
        self.index.close()
        self.tree.close()
        self.mark.close()

    def sync(self) -> None:
        """Fsync the index and the tree, then record how many entries they now hold durably."""
        self.index.flush()
        self.tree.flush()
        self.mark.write(min(self.index.size, self.tree.size))
        self._next_sync = time.monotonic() + self.sync_interval_s

    @property
    def size(self) -> int:
        return self.head.next_seq

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

    def _sync_indexes(self) -> None:
        """Make the line index and the tree hold exactly the log's whole lines.

        What lies past the sync mark is cut first: it may not have reached the disk whole. Of the rest,
        only the last record of each file is checked against the log (cheap at every start); if it does
        not match, that file is rebuilt from the log, which is the source of truth.
        """
        durable = self.mark.read()
        if durable is not None:
            if self.index.size > durable:
                self.index.truncate(durable)
            if self.tree.size > durable:
                self.tree.truncate(durable)
        known = min(self.index.size, self.head.next_seq)
        if known and not self._index_record_valid(known - 1):
            known = 0
        if known < self.index.size:
            self.index.truncate(known)
        offset = 0 if known == 0 else self.index.offset(known - 1) + len(self.line(known - 1)) + 1
        for line in self._lines_from(offset):
            self.index.append(offset)
            offset += len(line) + 1
        self.index.flush()
        keep = min(self.tree.size, self.index.size)
        if keep and self.tree.leaf(keep - 1) != leaf_hash(self.line(keep - 1)):
            keep = 0
        if keep < self.tree.size:
            self.tree.truncate(keep)
        self.tree.append(leaf_hash(self.line(i)) for i in range(keep, self.index.size))
        self.tree.flush()

    def _index_record_valid(self, i: int) -> bool:
        offset = self.index.offset(i)
        if offset >= os.fstat(self._fd).st_size or (offset > 0 and os.pread(self._fd, 1, offset - 1) != b"\n"):
            return False
        try:
            return decode_line(self.line(i)).get("seq") == i
        except ValueError:
            return False

    def _lines_from(self, offset: int) -> Iterable[bytes]:
        with open(self.paths.log, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if raw.endswith(b"\n"):
                    yield raw[:-1]

    def line(self, index: int) -> bytes:
        return read_line(self._fd, self.index, index)

    def _seal(self, head: Head, event_id: str, event: Any, quarantine: Quarantine) -> tuple[dict[str, Any], bytes]:
        """The entry for ``event`` and its line; an event that canonical JSON cannot carry (NaN, an
        integer beyond 2**53, a lone surrogate, not an object) is replaced by what ``quarantine`` makes
        of it, so that one bad event can never stop the log."""
        try:
            if not isinstance(event, dict):
                raise ValueError(f"an event must be a JSON object, not {type(event).__name__}")
            # the line is guaranteed to read back as the entry, and so to verify (see seal_entry)
            return seal_entry(head.next_seq, head.hash, event, event_id, self.signer)
        except (ValueError, TypeError, RecursionError) as exc:
            reason = f"{type(exc).__name__}: {exc}".encode("ascii", "backslashreplace").decode()[:300]
            return seal_entry(head.next_seq, head.hash, quarantine(event_id, event, reason), event_id, self.signer,
                              readback=False)

    def append_batch(self, events: Iterable[tuple[str, Any]], quarantine: Quarantine = _refuse) -> list[dict[str, Any]]:
        """Seal and durably write ``(event_id, event)`` pairs in order; return the entries written.

        ``quarantine(event_id, event, reason)`` returns the event to write in place of one that cannot
        be encoded; by default such an event raises ValueError and nothing of the batch is written.
        """
        written: list[dict[str, Any]] = []
        lines: list[bytes] = []
        head = Head(self.head.next_seq, self.head.hash, self.head.event_id)
        for event_id, event in events:
            if stream_id_key(event_id) <= stream_id_key(head.event_id):
                continue
            entry, line = self._seal(head, event_id, event, quarantine)
            lines.append(line)
            written.append(entry)
            head = Head(head.next_seq + 1, entry["hash"], event_id)
        if not lines:
            return written
        offset = os.fstat(self._fd).st_size
        os.write(self._fd, b"".join(lines))
        os.fsync(self._fd)
        for line in lines:
            self.index.append(offset)
            offset += len(line)
        self.index.flush(fsync=False)
        self.tree.append(leaf_hash(line[:-1]) for line in lines)
        self.tree.flush(fsync=False)
        self.head = head
        if time.monotonic() >= self._next_sync:
            self.sync()
        return written
