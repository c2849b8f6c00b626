"""Signed checkpoints of the audit log's Merkle tree, in the C2SP tlog-checkpoint format.

Every checkpoint is kept as its own file (``<size>-<kid>.note``); ``latest`` always holds the newest.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from audit.keys import _atomic_write
from audit.note import Checkpoint, key_id

LATEST = "latest"


def sign_checkpoint(checkpoint: Checkpoint, signer: Any) -> str:
    """The checkpoint as a signed note, signed by any signer (a KMS one included)."""
    body = checkpoint.to_body()
    signature = key_id(signer.name, signer.public_key) + signer.sign(body.encode())
    return f"{body}\n\u2014 {signer.name} {base64.b64encode(signature).decode()}\n"


class CheckpointStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, size: int, kid: str, note: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{size:016d}-{kid}.note"
        _atomic_write(path, note.encode())
        _atomic_write(self.directory / LATEST, note.encode())
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def latest(self) -> str | None:
        path = self.directory / LATEST
        return path.read_text() if path.exists() else None

    def all(self) -> list[Path]:
        return sorted(self.directory.glob("*.note")) if self.directory.exists() else []


def checkpoint_body(note: str) -> str:
    """The body of a signed note (everything before the blank line), without checking signatures."""
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise ValueError("not a signed note: no blank line before the signatures")
    return body + "\n"
