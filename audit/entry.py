"""One audit entry: its fields, canonical bytes, hash and signature.

An entry is a JSON object with ``seq`` (0-based position), ``prev`` (the previous entry's hash, or
GENESIS for the first), ``kid`` (the signing key), ``hash`` = SHA-256 over the RFC 8785 canonical JSON of
every field but ``hash`` and ``sig``, and ``sig`` = Ed25519 over the canonical JSON of every field but
``sig`` (base64). The line in the log is the entry's canonical JSON: the exact bytes a Merkle leaf hashes.

The canonical JSON is ``audit.canonical``'s: byte for byte ``rfc8785``'s (the reference, and the
fallback whenever the fast path is unsure), proven by a differential test. A sealed entry's three
canonical forms are built from one set of member texts: the hash body, then the same members with
``hash`` added (the signed bytes), then with ``sig`` added (the line).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from bisect import bisect_left
from typing import Any, Mapping

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.canonical import UNSURE, canonical_json, encode_value, join_members, object_members

GENESIS = "0" * 64
_NOT_HASHED = ("hash", "sig")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes the entry's signature covers: all of it but ``sig``."""
    return canonical_json({k: v for k, v in entry.items() if k != "sig"})


def make_entry(seq: int, prev: str, event: Mapping[str, Any], event_id: str, signer: Any | None = None) -> dict[str, Any]:
    """Build a sealed entry for ``event`` at position ``seq`` after an entry hashed ``prev``."""
    return seal_entry(seq, prev, event, event_id, signer, readback=False)[0]


def seal_entry(seq: int, prev: str, event: Mapping[str, Any], event_id: str, signer: Any | None = None,
               *, readback: bool = True) -> tuple[dict[str, Any], bytes]:
    """``make_entry`` and the entry's line (``encode_line`` of it), canonicalised once.

    The members of the entry but ``hash`` and ``sig`` are written once; the hash body, the signed
    bytes and the line are those members joined, with ``hash`` and then ``sig`` put in their sorted
    places. What canonical JSON cannot carry raises the reference's error (a ValueError).

    With ``readback``, the line is guaranteed to read back (``decode_line``) equal to the entry, and so
    to verify; ValueError if it would not. On the fast path the guarantee comes with the encoding: it
    only takes values of exactly dict, list, str, int, float, bool and None, each of which reads back
    equal and canonicalises again to the same bytes (the differential test proves it over generated
    entries). Whatever the fast path is unsure of goes the reference way (``rfc8785``, three times),
    and its line is then decoded and compared."""
    entry: dict[str, Any] = {"seq": seq, "prev": prev, "event_id": event_id, **event}
    if signer is not None:
        entry["kid"] = signer.kid
    try:
        keys, members = object_members(entry, _NOT_HASHED)
        body = ("{" + ",".join(members) + "}").encode()
    except UNSURE:
        return _seal_by_reference(entry, signer, readback)
    digest = hashlib.sha256(body).hexdigest()
    entry["hash"] = digest
    # "hash" and "sig" are ASCII: their sorted places among the keys are found by plain comparison
    members.insert(bisect_left(keys, "hash"), '"hash":"' + digest + '"')
    at_sig = bisect_left(keys, "sig") + 1  # after "hash", now among the members
    if signer is not None:
        sig = base64.b64encode(signer.sign(("{" + ",".join(members) + "}").encode())).decode()
        entry["sig"] = sig
        members.insert(at_sig, '"sig":"' + sig + '"')  # base64 needs no escaping
    elif "sig" in entry:  # without a signer, whatever the event carried under that name
        try:
            members.insert(at_sig, '"sig":' + encode_value(entry["sig"], strict=True))
            return entry, join_members(members).encode() + b"\n"
        except UNSURE:
            return entry, _checked(entry, encode_line(entry), readback)
    return entry, ("{" + ",".join(members) + "}\n").encode()


def _seal_by_reference(entry: dict[str, Any], signer: Any | None, readback: bool) -> tuple[dict[str, Any], bytes]:
    """The reference way: ``rfc8785`` over the hash body, the signed part and the whole entry."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    entry["hash"] = hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    if signer is not None:
        signed = rfc8785.dumps({k: v for k, v in entry.items() if k != "sig"})
        entry["sig"] = base64.b64encode(signer.sign(signed)).decode()
    return entry, _checked(entry, rfc8785.dumps(dict(entry)) + b"\n", readback)


def _checked(entry: dict[str, Any], line: bytes, readback: bool) -> bytes:
    """The line, once decoded back and found equal to the entry (when ``readback``)."""
    if readback and decode_line(line) != entry:
        raise ValueError("the entry does not read back as written")
    return line


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
    return canonical_json(dict(entry)) + b"\n"


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
