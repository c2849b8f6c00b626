"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, and tlog-checkpoint bodies.

A signed note is a body of non-empty lines, each ending in a newline, then a blank line, then one or
more lines ``— <key name> <base64(key id || signature)>``. The signature covers the body exactly (its
final newline included, the blank separator line not). Go's golang.org/x/mod/sumdb/note is the
reference implementation; its test vectors are in tests/unit/test_note.py.

The signed-note spec allows empty lines inside a body; this module does not, because every body it
signs or opens is a checkpoint (https://c2sp.org/tlog-checkpoint), whose lines must all be non-empty.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_TYPE = 0x01
KEY_ID_SIZE = 4
ED25519_SIGNATURE_SIZE = 64
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

_SIZE = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note that is malformed, or whose signatures do not hold up."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("a key name must be a non-empty string")
    if "+" in name or any(ch.isspace() or ch < " " for ch in name):
        raise ValueError(f"key name {name!r} contains whitespace, a control character or '+'")
    return name


def _b64decode(text: str) -> bytes:
    """Strict standard base64: padded, canonical, nothing outside the alphabet."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 {text!r}") from exc
    if not text or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"bad base64 {text!r}")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte Ed25519 key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    _check_name(name)
    public_key = bytes(public_key)
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class Verifier:
    """A known Ed25519 note key: its name, 4-byte id and raw 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, key_id(name, public_key), bytes(public_key))

    @property
    def vkey(self) -> str:
        return format_vkey(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def format_vkey(name: str, public_key: bytes) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``, as Go's note.NewEd25519VerifierKey."""
    kid = key_id(name, public_key)
    return f"{name}+{kid.hex()}+{_b64encode(bytes([ED25519_TYPE]) + bytes(public_key))}"


def _split_key(text: str, what: str) -> tuple[str, bytes, bytes]:
    """(name, key id, key bytes after the type byte) of ``<name>+<hex id>+<base64(0x01 || key)>``."""
    name, _, rest = text.partition("+")
    kid_hex, _, key64 = rest.partition("+")
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(kid_hex):
        raise ValueError(f"{what}: key id {kid_hex!r} is not 8 lowercase hex digits")
    key = _b64decode(key64)
    if not key or key[0] != ED25519_TYPE:
        raise ValueError(f"{what}: not an Ed25519 key (type byte {key[:1].hex() or 'missing'})")
    if len(key) != 33:
        raise ValueError(f"{what}: an Ed25519 key is 32 bytes, got {len(key) - 1}")
    return name, bytes.fromhex(kid_hex), key[1:]


def parse_vkey(vkey: str) -> Verifier:
    """The verifier of a vkey string; ValueError on anything malformed or an id that does not match."""
    if not isinstance(vkey, str):
        raise ValueError("a verifier key must be a string")
    name, kid, public_key = _split_key(vkey, "verifier key")
    if key_id(name, public_key) != kid:
        raise ValueError(f"verifier key: id {kid.hex()} does not match the name and key")
    return Verifier(name, kid, public_key)


def format_skey(name: str, private_key: Ed25519PrivateKey) -> str:
    """``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`` (secret: keep it out of logs)."""
    seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
    kid = key_id(name, _raw_public_key(private_key.public_key()))
    return f"{PRIVATE_KEY_PREFIX}{name}+{kid.hex()}+{_b64encode(bytes([ED25519_TYPE]) + seed)}"


def parse_skey(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """The (name, private key) of a signer key string, checking its id against the derived public key."""
    if not isinstance(skey, str) or not skey.startswith(PRIVATE_KEY_PREFIX):
        raise ValueError("a signer key starts with PRIVATE+KEY+")
    name, kid, seed = _split_key(skey[len(PRIVATE_KEY_PREFIX):], "signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id(name, _raw_public_key(private_key.public_key())) != kid:
        raise ValueError(f"signer key: id {kid.hex()} does not match the name and key")
    return name, private_key


def _check_text(text: str) -> None:
    """Valid UTF-8 with no ASCII control character but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("note is not valid UTF-8") from exc
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteError(f"note contains control character {ch!r}")


def _check_body(body: str) -> None:
    if not isinstance(body, str):
        raise NoteError("a note body must be a string")
    _check_text(body)
    if not body.endswith("\n"):
        raise NoteError("a note body must end with a newline")
    if body.startswith("\n") or "\n\n" in body:
        raise NoteError("a note body must not contain empty lines")


def sign_note(body: str, signers: list[tuple[str, Ed25519PrivateKey]]) -> str:
    """The signed note: ``body``, a blank line, then one signature line per (key name, key)."""
    _check_body(body)
    if not signers:
        raise NoteError("a signed note needs at least one signature")
    message = body.encode("utf-8")
    lines = []
    seen: set[tuple[str, bytes]] = set()
    for name, private_key in signers:
        kid = key_id(name, _raw_public_key(private_key.public_key()))
        if (name, kid) in seen:
            raise NoteError(f"key {name}+{kid.hex()} is listed twice")
        seen.add((name, kid))
        lines.append(f"{SIGNATURE_PREFIX}{name} {_b64encode(kid + private_key.sign(message))}\n")
    return body + "\n" + "".join(lines)


@dataclass(frozen=True)
class Signature:
    """One signature line: who claims to have signed, and the raw signature (key id removed)."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass
class Note:
    """An opened note: its body, the signatures that verified, and those by keys we do not know."""

    body: str
    signatures: list[Signature] = field(default_factory=list)
    unverified: list[Signature] = field(default_factory=list)


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"signature line does not start with an em dash and a space: {line[:40]!r}")
    name, _, sig64 = line[len(SIGNATURE_PREFIX):].partition(" ")
    try:
        _check_name(name)
        raw = _b64decode(sig64)
    except ValueError as exc:
        raise NoteError(f"malformed signature line: {exc}") from exc
    if len(raw) < KEY_ID_SIZE + ED25519_SIGNATURE_SIZE:
        raise NoteError(f"signature by {name} is {len(raw)} bytes, shorter than a key id and a signature")
    return Signature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def open_note(text: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and check its signatures against the known keys.

    As C2SP requires, signatures by unknown keys (name and id not both known) are ignored, but a
    signature by a known key must verify, and at least one must. Raises NoteError otherwise.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("note is not valid UTF-8") from exc
    if not isinstance(text, str):
        raise NoteError("a note must be text")
    _check_text(text)
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    body, block = text[:split + 1], text[split + 2:]
    _check_body(body)
    if not block.endswith("\n"):
        raise NoteError("note has no signature lines, or its last line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, more than {MAX_SIGNATURES}")
    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for verifier in verifiers:
        entry = known.setdefault((verifier.name, verifier.key_id), [])
        if verifier not in entry:
            entry.append(verifier)
    message = body.encode("utf-8")
    note = Note(body)
    for line in lines:
        sig = _parse_signature_line(line)
        label = f"{sig.name}+{sig.key_id.hex()}"
        candidates = known.get((sig.name, sig.key_id))
        if candidates is None:
            if sig not in note.unverified:
                note.unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise NoteError(f"ambiguous key {label}: several known keys share that name and id")
        if not candidates[0].verify(message, sig.signature):
            raise NoteError(f"invalid signature for key {label}")
        if sig not in note.signatures:
            note.signatures.append(sig)
    if not note.signatures:
        raise NoteError("note has no signature by a known key")
    return note


@dataclass
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, RFC 6962 root hash, opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: list[str] = field(default_factory=list)

    def to_body(self) -> str:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size < 1 << 64:
            raise NoteError(f"tree size {self.size!r} is not a uint64")
        if not isinstance(self.root_hash, (bytes, bytearray)) or len(self.root_hash) != 32:
            raise NoteError("root hash must be 32 bytes")
        lines = [self.origin, str(self.size), _b64encode(bytes(self.root_hash)), *self.extensions]
        if not all(isinstance(line, str) and line and "\n" not in line for line in lines):
            raise NoteError("origin and extension lines must be non-empty single lines")
        body = "\n".join(lines) + "\n"
        _check_body(body)
        return body


def parse_checkpoint(body: str) -> Checkpoint:
    """Strictly parse a checkpoint body (a note's text, final newline included)."""
    _check_body(body)
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"a checkpoint has at least 3 lines, got {len(lines)}")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text) or int(size_text) >= 1 << 64:
        raise NoteError(f"tree size {size_text!r} is not a decimal uint64 without leading zeros")
    try:
        root_hash = _b64decode(root_text)
    except ValueError as exc:
        raise NoteError(f"root hash: {exc}") from exc
    if len(root_hash) != 32:
        raise NoteError(f"root hash is {len(root_hash)} bytes, not 32")
    return Checkpoint(origin, int(size_text), root_hash, extensions)


def open_checkpoint(text: str | bytes, verifiers: Iterable[Verifier],
                    origin: str | None = None) -> tuple[Checkpoint, Note]:
    """Open a signed checkpoint note and parse its body, optionally requiring a given origin."""
    note = open_note(text, verifiers)
    checkpoint = parse_checkpoint(note.body)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint, note
