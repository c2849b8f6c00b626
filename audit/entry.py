"""One audit entry: its fields, canonical bytes and hash.

An entry is a JSON object with ``seq`` (0-based position), ``prev`` (the previous entry's hash, or
GENESIS for the first) and ``hash`` = sha256 over the RFC 8785 canonical JSON of every other field.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash an entry must carry: sha256 of its canonical JSON without the ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def make_entry(seq: int, prev: str, event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """Build a sealed entry for ``event`` at position ``seq`` after an entry hashed ``prev``."""
    entry = {"seq": seq, "prev": prev, "event_id": event_id, **event}
    entry["hash"] = entry_hash(entry)
    return entry


def encode_line(entry: dict[str, Any]) -> bytes:
    """The exact bytes of the entry's line in the log (canonical JSON plus a newline)."""
    return rfc8785.dumps(entry) + b"\n"


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse one line; raises ValueError when it is not a JSON object."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
