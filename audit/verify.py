"""Verification of an audit log by anyone holding the file and the public keys: no Redis, no qgate state.

Three layers, each catching what the one before cannot:
- the hash chain catches an edited, deleted, inserted or reordered line;
- entry signatures catch a rewrite by someone without the signing key;
- signed checkpoints catch a rewrite with recomputed hashes, a truncated tail, or a rollback to an
  older copy: the first N lines must hash to the Merkle root each checkpoint committed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.entry import GENESIS, decode_line, entry_hash, signature_valid
from audit.merkle import EMPTY_ROOT, leaf_hash, node_hash
from audit.note import Checkpoint


@dataclass(frozen=True)
class Verification:
    valid: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.valid:
            return {"valid": True, "entries": self.entries, "head": self.head}
        return {"valid": False, "entries": self.entries, "first_bad_seq": self.first_bad_seq,
                "reason": self.reason}


class RootTracker:
    """The RFC 6962 root of the leaves seen so far, kept as the perfect subtrees of a compact range."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def add(self, leaf: bytes) -> None:
        height, node = 0, leaf_hash(leaf)
        while self._stack and self._stack[-1][0] == height:
            node = node_hash(self._stack.pop()[1], node)
            height += 1
        self._stack.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def verify_lines(lines: Iterable[bytes], keys: Mapping[str, Ed25519PublicKey] | None = None,
                 checkpoints: Sequence[Checkpoint] = ()) -> Verification:
    """Check every line in order and stop at the first that breaks the chain, naming its position.

    With ``keys`` (by kid), every entry must also carry a valid signature by one of them. Each
    checkpoint's root must equal the root of the log's first ``size`` lines.
    """
    prev = GENESIS
    tracker = RootTracker()
    due = sorted(checkpoints, key=lambda c: c.size)
    position = -1
    for position, raw in enumerate(lines):
        try:
            problem = _check(position, raw, prev, keys)
        except Exception as exc:  # a line that breaks the checker itself is a bad line, never a crash
            problem = f"seq {position}: cannot be checked ({type(exc).__name__}: {str(exc)[:200]})"
        if problem:
            return Verification(False, position, prev, position, problem)
        prev = decode_line(raw)["hash"]
        tracker.add(raw[:-1])
        while due and due[0].size == tracker.size:
            if tracker.root() != due.pop(0).root_hash:
                return Verification(False, tracker.size, prev, None,
                                    f"the first {tracker.size} entries do not hash to the signed checkpoint's "
                                    "root: history was rewritten")
    count = position + 1
    if due:
        return Verification(False, count, prev, count, f"the log has {count} entries but a checkpoint of "
                                                       f"{due[0].size} was signed: truncated or rolled back")
    return Verification(True, count, prev)


def _check(position: int, raw: bytes, prev: str, keys: Mapping[str, Ed25519PublicKey] | None) -> str | None:
    if not raw.endswith(b"\n"):
        return f"line {position + 1} is incomplete (no newline): a torn write"
    try:
        entry = decode_line(raw)
    except ValueError:
        return f"line {position + 1} is not a JSON object"
    if entry.get("seq") != position:
        return f"expected seq {position}, found {entry.get('seq')!r}: a line was deleted, inserted or moved"
    if not isinstance(entry.get("hash"), str):
        return f"seq {position}: has no hash"
    if entry.get("prev") != prev:
        return f"seq {position}: prev does not match the hash of seq {position - 1}"
    if entry.get("hash") != entry_hash(entry):
        return f"seq {position}: content does not match its hash (the entry was edited)"
    if keys is not None and not signature_valid(entry, keys):
        return f"seq {position}: no valid signature by a known key (kid {entry.get('kid')!r})"
    return None


def verify_file(path: Path, keys: Mapping[str, Ed25519PublicKey] | None = None,
                checkpoints: Sequence[Checkpoint] = ()) -> Verification:
    """Verify the log at ``path``; a missing file is an empty log."""
    if not path.exists():
        return verify_lines([], keys, checkpoints)
    with path.open("rb") as handle:
        return verify_lines(handle, keys, checkpoints)
