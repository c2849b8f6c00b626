"""RFC 6962 Merkle tree over the audit log, with every complete subtree's hash stored on disk.

Hashing follows RFC 6962 §2.1: a leaf is SHA-256(0x00 || data), an interior node SHA-256(0x01 || left ||
right), the empty tree SHA-256(""). MTH(D[n]) splits at k, the largest power of two smaller than n.

``MerkleStore`` keeps one append-only file per level (``level-00.bin``, ``level-01.bin``, ...). Record i
of level L (32 bytes at offset 32·i) is the hash of the aligned complete subtree over leaves
[i·2^L, (i+1)·2^L), so level L holds floor(size / 2^L) records. Any MTH the RFC recursions ask for is
then a stored hash or a fold of at most log2(n) stored hashes, and proofs at a million leaves are a few
dozen ``pread`` calls.

Files are the truth. On open a writer cuts partial records and makes every level agree with level 0.
A flush writes the higher levels before level 0, so a reader in another process that sizes the tree by
level 0 never asks for a node that is not written yet. There must be a single writer per directory.

The verifiers at the bottom need no store: they are the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence

HASH_SIZE = 32
MAX_LEVELS = 64

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256
_REBUILD_CHUNK = 1 << 16

EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one log entry: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + bytes(left) + bytes(right)).digest()


def _split(n: int) -> int:
    """k for MTH(D[n]): the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def compute_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of raw entries, straight from the recursive definition: a reference for tests."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = _split(len(leaves))
    return node_hash(compute_root(leaves[:k]), compute_root(leaves[k:]))


class StoreCorrupted(RuntimeError):
    """A stored node the tree's size implies is missing (files cut or deleted under us)."""


def _level_name(level: int) -> str:
    return f"level-{level:02d}.bin"


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _parents(row: Sequence[bytes]) -> list[bytes]:
    """Node hashes of consecutive pairs of ``row``; a trailing unpaired hash is left out."""
    return [_sha256(_NODE_PREFIX + left + right).digest() for left, right in zip(row[0::2], row[1::2])]


class MerkleStore:
    """Every complete-subtree hash of an append-only log, one file per tree level.

    ``append`` only buffers (its nodes are readable at once); ``flush`` writes and fsyncs them. ``size``
    counts buffered leaves too; ``flushed_size`` is what the files hold.
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._files: dict[int, BinaryIO] = {}
        self._on_disk: list[int] = []
        self._pending: list[list[bytes]] = []
        self._lone: list[bytes | None] = []
        self._unsynced: set[int] = set()
        self._new_files = False
        if read_only:
            if not self.directory.is_dir():
                raise FileNotFoundError(f"no Merkle store at {self.directory}")
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._repair()

    @classmethod
    def open_read_only(cls, directory: Path) -> MerkleStore:
        """A reader for API processes: never creates, repairs or writes files; sees the writer's flushes."""
        return cls(directory, read_only=True)

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()

    def __enter__(self) -> MerkleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files ---------------------------------------------------------------------------------------

    def _path(self, level: int) -> Path:
        return self.directory / _level_name(level)

    def _file(self, level: int, create: bool = False) -> BinaryIO | None:
        handle = self._files.get(level)
        if handle is not None:
            return handle
        path = self._path(level)
        if self.read_only:
            try:
                handle = open(path, "rb", buffering=0)
            except FileNotFoundError:
                return None
        else:
            if not create and not path.exists():
                return None
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            handle = open(fd, "r+b", buffering=0)
        self._files[level] = handle
        return handle

    def _file_records(self, level: int) -> int:
        handle = self._file(level)
        return 0 if handle is None else os.fstat(handle.fileno()).st_size // HASH_SIZE

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _repair(self) -> None:
        """Cut partial records; make every level hold exactly what level 0 implies (writer only)."""
        created = not self._path(0).exists()
        base = self._file(0, create=True)
        assert base is not None
        length = os.fstat(base.fileno()).st_size
        leaves = length // HASH_SIZE
        touched: set[int] = set()
        if length != leaves * HASH_SIZE:
            os.ftruncate(base.fileno(), leaves * HASH_SIZE)
            touched.add(0)
        for level in range(1, MAX_LEVELS + 1):
            want = leaves >> level
            if want == 0 and not self._path(level).exists():
                continue
            created = created or not self._path(level).exists()
            handle = self._file(level, create=True)
            assert handle is not None
            length = os.fstat(handle.fileno()).st_size
            have = min(length // HASH_SIZE, want)
            if length != have * HASH_SIZE:
                os.ftruncate(handle.fileno(), have * HASH_SIZE)
                touched.add(level)
            if have < want:
                self._rebuild(level, have, want)
                touched.add(level)
        for level in sorted(touched):
            os.fsync(self._files[level].fileno())
        if created:
            self._fsync_directory()
        counts = [leaves >> level for level in range(leaves.bit_length() or 1)]
        self._on_disk = counts
        self._pending = [[] for _ in counts]
        self._lone = [self._read(level, count - 1) if count % 2 else None for level, count in enumerate(counts)]

    def _rebuild(self, level: int, have: int, want: int) -> None:
        """Recompute records [have, want) of ``level`` from the (already correct) level below."""
        below = self._files[level - 1].fileno()
        out = self._files[level].fileno()
        i = have
        while i < want:
            n = min(_REBUILD_CHUNK, want - i)
            data = os.pread(below, 2 * n * HASH_SIZE, 2 * i * HASH_SIZE)
            if len(data) != 2 * n * HASH_SIZE:
                raise StoreCorrupted(f"level {level - 1} is shorter than level 0 implies")
            row = [data[j:j + HASH_SIZE] for j in range(0, len(data), HASH_SIZE)]
            os.pwrite(out, b"".join(_parents(row)), i * HASH_SIZE)
            i += n

    def _read(self, level: int, index: int) -> bytes:
        """Record ``index`` of ``level``: from the buffer if not flushed yet, else from its file."""
        if not self.read_only and level < len(self._on_disk) and index >= self._on_disk[level]:
            return self._pending[level][index - self._on_disk[level]]
        handle = self._file(level)
        data = b"" if handle is None else os.pread(handle.fileno(), HASH_SIZE, index * HASH_SIZE)
        if len(data) != HASH_SIZE:
            raise StoreCorrupted(f"{self._path(level)} has no record {index}")
        return data

    # -- size, append, flush, truncate ---------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of leaves, buffered ones included (a reader sees what level 0 holds right now)."""
        with self._lock:
            if self.read_only:
                return self._file_records(0)
            return self._on_disk[0] + len(self._pending[0])

    @property
    def flushed_size(self) -> int:
        """Number of leaves written to the files."""
        with self._lock:
            return self._file_records(0) if self.read_only else self._on_disk[0]

    def _count(self, level: int) -> int:
        if level >= len(self._on_disk):
            return 0
        return self._on_disk[level] + len(self._pending[level])

    def append(self, leaf_hashes: Iterable[bytes]) -> None:
        """Buffer leaf hashes (32 bytes each) and every parent they complete; ``flush`` makes them durable."""
        if self.read_only:
            raise PermissionError("this Merkle store is open read-only")
        row = []
        for h in leaf_hashes:
            h = bytes(h)
            if len(h) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(h)}")
            row.append(h)
        with self._lock:
            level = 0
            while row:
                if level == len(self._on_disk):
                    self._on_disk.append(0)
                    self._pending.append([])
                    self._lone.append(None)
                pairing = row
                lone = self._lone[level]
                if lone is not None:
                    pairing = [lone, *row]
                self._pending[level].extend(row)
                self._lone[level] = pairing[-1] if len(pairing) % 2 else None
                row = _parents(pairing)
                level += 1

    def flush(self, fsync: bool = True) -> None:
        """Write buffered nodes, top level first so level 0 never runs ahead; then fsync what was written.

        With ``fsync=False`` the writes are left unsynced until the next ``flush()`` that syncs.
        """
        if self.read_only:
            raise PermissionError("this Merkle store is open read-only")
        with self._lock:
            for level in reversed(range(len(self._pending))):
                if not self._pending[level]:
                    continue
                if not self._path(level).exists():
                    self._new_files = True
                handle = self._file(level, create=True)
                assert handle is not None
                os.pwrite(handle.fileno(), b"".join(self._pending[level]), self._on_disk[level] * HASH_SIZE)
                self._on_disk[level] += len(self._pending[level])
                self._pending[level] = []
                self._unsynced.add(level)
            if fsync:
                for level in sorted(self._unsynced, reverse=True):
                    os.fsync(self._files[level].fileno())
                self._unsynced.clear()
                if self._new_files:
                    self._fsync_directory()
                    self._new_files = False

    def truncate(self, size: int) -> None:
        """Cut every level back to what ``size`` leaves imply (buffered nodes included), and fsync.

        For crash recovery: the log is the truth, the caller then appends whatever the store lacks.
        """
        if self.read_only:
            raise PermissionError("this Merkle store is open read-only")
        size = _as_int(size, "size")
        with self._lock:
            if not 0 <= size <= self.size:
                raise ValueError(f"cannot truncate to {size} leaves: the store holds {self.size}")
            for level in range(len(self._on_disk)):
                keep = size >> level
                if keep < self._on_disk[level]:
                    handle = self._file(level)
                    assert handle is not None
                    os.ftruncate(handle.fileno(), keep * HASH_SIZE)
                    os.fsync(handle.fileno())
                    self._on_disk[level] = keep
                    self._pending[level] = []
                else:
                    del self._pending[level][keep - self._on_disk[level]:]
                self._lone[level] = self._read(level, keep - 1) if keep % 2 else None

    # -- hashes and proofs ---------------------------------------------------------------------------

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self._read(level, start >> level)
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def _check_size(self, size: int, what: str = "size") -> int:
        size = _as_int(size, what)
        have = self.size
        if size < 0 or size > have:
            raise ValueError(f"{what} {size} is out of range: the tree has {have} leaves")
        return size

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) taken as a list of their own (0 <= start < end <= size)."""
        start = _as_int(start, "start")
        end = _as_int(end, "end")
        with self._lock:
            self._check_size(end, "end")
            if not 0 <= start < end:
                raise ValueError(f"empty or negative range [{start}, {end})")
            return self._mth(start, end)

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves; EMPTY_ROOT for 0."""
        with self._lock:
            size = self._check_size(size)
            return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def leaf(self, index: int) -> bytes:
        """The stored leaf hash at ``index``."""
        with self._lock:
            index = _as_int(index, "index")
            if not 0 <= index < self.size:
                raise ValueError(f"index {index} is out of range: the tree has {self.size} leaves")
            return self._read(0, index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) of RFC 6962 §2.1.1, leaf-side hash first."""
        index = _as_int(index, "index")
        with self._lock:
            size = self._check_size(size)
            if not 0 <= index < size:
                raise ValueError(f"leaf index {index} is not in a tree of size {size}")
            path: list[bytes] = []
            start, end = 0, size
            while end - start > 1:
                k = _split(end - start)
                if index < start + k:
                    path.append(self._mth(start + k, end))
                    end = start + k
                else:
                    path.append(self._mth(start, start + k))
                    start += k
            path.reverse()
            return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]) of RFC 6962 §2.1.2; 0 < first <= second <= size."""
        first = _as_int(first, "first")
        with self._lock:
            second = self._check_size(second, "second")
            if not 0 < first <= second:
                raise ValueError(f"no consistency proof from size {first} to size {second}: "
                                 "need 0 < first <= second (RFC 9162 §2.1.4)")
            proof: list[bytes] = []
            m, start, end, complete = first, 0, second, True
            while m != end - start:
                k = _split(end - start)
                if m <= k:
                    proof.append(self._mth(start + k, end))
                    end = start + k
                else:
                    proof.append(self._mth(start, start + k))
                    m -= k
                    start += k
                    complete = False
            if not complete:
                proof.append(self._mth(start, end))
            proof.reverse()
            return proof


# -- verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------------------


def _is_hash(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview)) and len(value) == HASH_SIZE


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _proof_hashes(proof: Any) -> list[bytes] | None:
    if not isinstance(proof, (list, tuple)) or not all(_is_hash(p) for p in proof):
        return None
    return [bytes(p) for p in proof]


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to, or None when the proof is malformed for (index, size)."""
    hashes = _proof_hashes(proof)
    if hashes is None or not _is_hash(leaf_hash) or not _is_count(index) or not _is_count(size):
        return None
    if index >= size:
        return None
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in hashes:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf at ``index`` is in the tree of ``size`` with ``root``. Never raises."""
    if not _is_hash(root):
        return False
    computed = root_from_inclusion(leaf_hash, index, size, proof)
    return computed is not None and computed == bytes(root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of size ``first`` is a prefix of the tree of size ``second``.

    Never raises. Equal sizes need equal roots and an empty proof; size 0 (for which no proof can be
    generated) is consistent with anything given an empty proof and the empty tree's root.
    """
    hashes = _proof_hashes(proof)
    if hashes is None or not _is_count(first) or not _is_count(second):
        return False
    if not _is_hash(first_root) or not _is_hash(second_root) or first > second:
        return False
    first_root, second_root = bytes(first_root), bytes(second_root)
    if first == second:
        return not hashes and first_root == second_root
    if first == 0:
        return not hashes and first_root == EMPTY_ROOT
    if not hashes:
        return False
    if first & (first - 1) == 0:
        hashes = [first_root, *hashes]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
