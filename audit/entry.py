"""One audit entry: its fields, canonical bytes, hash and signature.

An entry is a JSON object with ``seq`` (0-based position), ``prev`` (the previous entry's hash, or
GENESIS for the first), ``kid`` (the signing key), ``hash`` = SHA-256 over the RFC 8785 canonical JSON of
every field but ``hash`` and ``sig``, and ``sig`` = Ed25519 over the canonical JSON of every field but
``sig`` (base64). The line in the log is the entry's canonical JSON: the exact bytes a Merkle leaf hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Mapping

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes the entry's signature covers: all of it but ``sig``."""
    return rfc8785.dumps({k: v for k, v in entry.items() if k != "sig"})


def make_entry(seq: int, prev: str, event: Mapping[str, Any], event_id: str, signer: Any | None = None) -> dict[str, Any]:
    """Build a sealed entry for ``event`` at position ``seq`` after an entry hashed ``prev``."""
    entry: dict[str, Any] = {"seq": seq, "prev": prev, "event_id": event_id, **event}
    if signer is not None:
        entry["kid"] = signer.kid
    entry["hash"] = entry_hash(entry)
    if signer is not None:
        entry["sig"] = base64.b64encode(signer.sign(signed_bytes(entry))).decode()
    return entry


def signature_valid(entry: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> bool:
    """Whether the entry carries a signature by one of ``keys`` (by kid) over its own content."""
    key = keys.get(str(entry.get("kid")))
    sig = entry.get("sig")
    if key is None or not isinstance(sig, str):
        return False
    try:
        key.verify(base64.b64decode(sig, validate=True), signed_bytes(entry))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def encode_line(entry: Mapping[str, Any]) -> bytes:
    """The exact bytes of the entry's line in the log (canonical JSON plus a newline)."""
    return rfc8785.dumps(dict(entry)) + b"\n"


SAFE_INTEGER = 2**53 - 1


def _number_as_written(text: str) -> int | float:
    """An integer literal as RFC 8785 wrote it.

    RFC 8785 writes every number as the shortest form of its IEEE-754 double, so the float 1e17 is
    written ``100000000000000000``. Read back as a Python int it lies beyond ±(2**53 - 1), where the
    canonicaliser refuses ints, and the line's hash could not be recomputed. Such a literal can only
    have come from a double, so it is read back as that double, which canonicalises to the same bytes.
    """
    value = int(text)
    return value if -SAFE_INTEGER <= value <= SAFE_INTEGER else float(text)


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse one line, numbers read the way the canonical form wrote them; ValueError if not an object."""
    data = json.loads(line, parse_int=_number_as_written)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
