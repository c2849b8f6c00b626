"""Clients' webhook secrets in Redis, encrypted under a key that lives outside Redis.

The HMAC key must be usable in clear to sign, so it cannot be stored hashed like a client secret. It is
stored AES-256-GCM encrypted (``cryptography``'s AESGCM, a random 96-bit nonce per record, the client id
as associated data so a record cannot be moved to another client) under a key kept in a file
(``QGATE_WEBHOOK_KEY_FILE``, created 0600 on first use like the JWT key). A Redis dump alone therefore
reveals no secret; an operator who loses the key file must rotate every client's webhook secret.

A client's record holds its secrets newest first; ``rotate`` adds a new one and gives the others an end
(``retires_at``) after the grace period, during which deliveries are signed with both.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from audit import secret_file
from webhooks.signing import new_secret

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT = "aesgcm1"


def webhook_secret_key(client_id: str) -> str:
    return f"qgate:client:{client_id}:webhook"


def load_or_create_key(path: Path) -> bytes:
    """The vault key at ``path`` (base64 of 32 bytes), created 0600 if missing; refused if others can read
    it. Two processes creating it at once agree: the first link wins, the other reads it."""
    encoded = secret_file.load_or_create(path, lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    key = base64.b64decode(encoded.strip())
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte key in base64")
    return key


class SecretBox:
    """AES-GCM encryption of short strings, bound to a context (associated data)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{FORMAT}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, token: str, context: str) -> str:
        kind, _, data = token.partition(":")
        if kind != FORMAT:
            raise ValueError(f"unknown sealed format {kind!r}")
        raw = base64.b64decode(data)
        return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()


class WebhookSecrets:
    """Each client's webhook secrets, sealed in Redis."""

    def __init__(self, redis: Any, box: SecretBox, grace_s: float) -> None:
        self.redis, self.box, self.grace_s = redis, box, grace_s

    def create(self, client_id: str) -> str:
        """A first secret for a new client (replacing any), returned in clear once."""
        secret = new_secret()
        self.redis.set(webhook_secret_key(client_id), json.dumps({"secrets": [self._entry(client_id, secret)]}))
        return secret

    def rotate(self, client_id: str, now: float | None = None) -> tuple[str, float]:
        """A new secret; those before it stay valid until the returned time, then are dropped."""
        now = time.time() if now is None else now
        secret, until = new_secret(), now + self.grace_s
        key = webhook_secret_key(client_id)

        def apply(pipe: Any) -> None:
            record = json.loads(pipe.get(key) or '{"secrets": []}')
            kept = [dict(entry, retires_at=min(entry.get("retires_at") or until, until))
                    for entry in record["secrets"] if (entry.get("retires_at") or until) > now]
            pipe.multi()
            pipe.set(key, json.dumps({"secrets": [self._entry(client_id, secret), *kept]}))

        self.redis.transaction(apply, key)
        return secret, until

    def live(self, client_id: str, now: float | None = None) -> list[str]:
        """The client's secrets that sign deliveries now, newest first."""
        now = time.time() if now is None else now
        raw = self.redis.get(webhook_secret_key(client_id))
        if not raw:
            return []
        return [self.box.open(entry["sealed"], client_id) for entry in json.loads(raw)["secrets"]
                if (entry.get("retires_at") or now + 1) > now]

    def _entry(self, client_id: str, secret: str) -> dict[str, Any]:
        return {"sealed": self.box.seal(secret, client_id), "created_at": time.time(), "retires_at": None}
