"""OAuth clients in Redis. Secrets are random, shown once, and stored only as salted scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from api.tokens import SCOPES, TENANT_PATTERN, is_subject, is_tenant  # noqa: F401 (TENANT_PATTERN: its old home)

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_DUMMY_SALT = b"qgate-dummy-salt"


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant: str
    scopes: tuple[str, ...]


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT)


def _key(client_id: str) -> str:
    """The record's key. Only ids of the subject shape get here: no ':', glob characters or whitespace."""
    return f"qgate:client:{client_id}"


class ClientStore:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def create(self, tenant: str, scopes: list[str]) -> tuple[Client, str]:
        """A new client and its secret (returned once, never stored in clear)."""
        if not is_tenant(tenant):
            raise ValueError("tenant must be 1-64 characters of letters, digits, '_', '.', '-'")
        unknown = sorted(set(scopes) - SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(sorted(SCOPES))})")
        client = Client("qc_" + secrets.token_hex(12), tenant, tuple(dict.fromkeys(scopes)))
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = {"tenant": tenant, "scopes": list(client.scopes), "salt": base64.b64encode(salt).decode(),
                  "hash": base64.b64encode(_hash(secret, salt)).decode()}
        self.redis.set(_key(client.client_id), json.dumps(record))
        return client, secret

    def exists(self, client_id: str) -> bool:
        return is_subject(client_id) and bool(self.redis.exists(_key(client_id)))

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if the secret matches; the same work is done for unknown ids (no timing oracle).

        An id that is not of the subject shape cannot name a client (``create`` makes ``qc_`` + hex), so it
        is refused without a lookup or a hash: that its shape is wrong is no secret.
        """
        if not is_subject(client_id):
            return None
        raw = self.redis.get(_key(client_id))
        if raw is None:
            _hash(secret, _DUMMY_SALT)
            return None
        record = json.loads(raw)
        expected = base64.b64decode(record["hash"])
        if not hmac.compare_digest(_hash(secret, base64.b64decode(record["salt"])), expected):
            return None
        return Client(client_id, record["tenant"], tuple(record["scopes"]))
