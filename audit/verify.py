"""Verification of an audit log by anyone holding the file: no keys, no Redis, no qgate state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from audit.entry import GENESIS, decode_line, entry_hash


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


def verify_lines(lines: Iterable[bytes]) -> Verification:
    """Check every line in order; stop at the first one that breaks the chain and name it.

    ``first_bad_seq`` is the position where the bad line stands (0-based), which is the sequence number
    an intact entry there would carry. Edits break the entry's own hash; deletions, insertions and
    reorderings break ``seq`` or ``prev``.
    """
    prev = GENESIS
    count = 0
    for position, raw in enumerate(lines):
        problem = _check(position, raw, prev)
        if problem:
            return Verification(False, position, prev, position, problem)
        prev = decode_line(raw)["hash"]
        count = position + 1
    return Verification(True, count, prev)


def _check(position: int, raw: bytes, prev: str) -> str | None:
    if not raw.endswith(b"\n"):
        return f"line {position + 1} is incomplete (no newline): a torn write"
    try:
        entry = decode_line(raw)
    except ValueError:
        return f"line {position + 1} is not a JSON object"
    if entry.get("seq") != position:
        return f"expected seq {position}, found {entry.get('seq')!r}: a line was deleted, inserted or moved"
    if entry.get("prev") != prev:
        return f"seq {position}: prev does not match the hash of seq {position - 1}"
    if entry.get("hash") != entry_hash(entry):
        return f"seq {position}: content does not match its hash (the entry was edited)"
    return None


def verify_file(path: Path) -> Verification:
    """Verify the log at ``path``; a missing file is an empty, valid log."""
    if not path.exists():
        return Verification(True, 0, GENESIS)
    with path.open("rb") as handle:
        return verify_lines(handle)
