"""Audit signing keys: a small signer interface, and a keyring of Ed25519 keys on disk with rotation.

The signer interface is all the audit writer needs (``name``, ``kid``, ``public_key``, ``sign``), so a
KMS or HSM signer plugs in by implementing it: ``sign`` calls the KMS's Ed25519 sign operation and
``public_key`` returns the key's raw 32 bytes. Retired keys stay in the keyring with their
``not_after`` so that what they signed still verifies.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.note import format_vkey, key_id

KEYRING = "keyring.json"


class Signer(Protocol):
    name: str
    kid: str
    public_key: bytes

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeyInfo:
    """A key as published: everything but the private part."""

    kid: str
    name: str
    public_key: str  # base64 of the raw 32 bytes
    not_before: float
    not_after: float | None = None

    @property
    def raw_public_key(self) -> bytes:
        return base64.b64decode(self.public_key)

    def as_public(self) -> dict[str, Any]:
        return {"kid": self.kid, "name": self.name, "alg": "Ed25519", "public_key": self.public_key,
                "vkey": format_vkey(self.name, self.raw_public_key),
                "not_before": _iso(self.not_before), "not_after": _iso(self.not_after)}

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw_public_key)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Ed25519Signer:
    """A signer holding its private key in memory."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                 serialization.PublicFormat.Raw)
        self.kid = key_id(name, self.public_key).hex()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


class Keyring:
    """Keys under one directory (owner-only): ``<kid>.pem`` each, and ``keyring.json`` listing them all."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name

    @property
    def _index(self) -> Path:
        return self.directory / KEYRING

    def keys(self) -> list[KeyInfo]:
        if not self._index.exists():
            return []
        return [KeyInfo(**item) for item in json.loads(self._index.read_text())["keys"]]

    def _save(self, keys: list[KeyInfo]) -> None:
        _atomic_write(self._index, json.dumps({"keys": [asdict(k) for k in keys]}, indent=1).encode())

    def active(self) -> Ed25519Signer:
        """The signer of the current key, creating the first key if there is none."""
        current = [k for k in self.keys() if k.not_after is None]
        if not current:
            return self.rotate()
        info = current[-1]
        return Ed25519Signer(info.name, load_private_key(self.directory / f"{info.kid}.pem"))

    def rotate(self, now: float | None = None) -> Ed25519Signer:
        """Start a new signing key; the old one is retired (``not_after`` = now) but stays listed."""
        now = time.time() if now is None else now
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        signer = Ed25519Signer(self.name, Ed25519PrivateKey.generate())
        _write_private(self.directory / f"{signer.kid}.pem", signer.private_key)
        keys = [k if k.not_after is not None else KeyInfo(**{**asdict(k), "not_after": now}) for k in self.keys()]
        keys.append(KeyInfo(signer.kid, signer.name, base64.b64encode(signer.public_key).decode(), now))
        self._save(keys)
        return signer


def public_keys_by_kid(verifiers: Any) -> dict[str, Ed25519PublicKey]:
    """Entry-signature keys from signed-note verifiers (an entry's ``kid`` is the hex note key id)."""
    return {v.key_id.hex(): Ed25519PublicKey.from_public_bytes(v.public_key) for v in verifiers}


def signer_from_file(path: Path, name: str) -> Ed25519Signer:
    """A fixed key from a ``*_FILE`` secret (e.g. a mounted secret); rotation is then the operator's."""
    return Ed25519Signer(name, load_private_key(path))
