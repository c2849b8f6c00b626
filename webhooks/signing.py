"""Webhook secrets and signatures: the contract's ``X-Qgate-Signature`` and Standard Webhooks.

A secret is ``whsec_`` + base64 of 32 random bytes; both schemes use the decoded bytes as the HMAC-SHA256
key. While a rotated-out secret is in its grace period, every delivery carries one signature per live
secret, so a receiver holding either verifies it:

* ``X-Qgate-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`` with HMAC over ``"<t>.<body>"``.
* ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64>[ v1,<base64>]`` with HMAC
  over ``"<id>.<timestamp>.<body>"`` (https://www.standardwebhooks.com/).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if not key:
        raise ValueError("empty webhook secret")
    return key


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def signature_headers(body: bytes, webhook_id: str, timestamp: int, live_secrets: Sequence[str]) -> dict[str, str]:
    """The signature headers of one delivery, one signature per live secret (newest first)."""
    if not live_secrets:
        raise ValueError("no webhook secret to sign with")
    keys = [secret_key(secret) for secret in live_secrets]
    qgate = ",".join([f"t={timestamp}", *(f"v1={_mac(key, f'{timestamp}.'.encode() + body).hex()}"
                                          for key in keys)])
    standard = " ".join(
        "v1," + base64.b64encode(_mac(key, f"{webhook_id}.{timestamp}.".encode() + body)).decode()
        for key in keys)
    return {"X-Qgate-Signature": qgate, "webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": standard}


def verify_qgate_signature(body: bytes, header: str, secret: str, tolerance_s: int = DEFAULT_TOLERANCE_S,
                           now: float | None = None) -> bool:
    """What a receiver does with ``X-Qgate-Signature``: the timestamp is recent and one v1 matches."""
    stamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamp = value
        elif name == "v1":
            signatures.append(value)
    if stamp is None or not stamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance_s:
        return False
    expected = _mac(secret_key(secret), f"{stamp}.".encode() + body).hex()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
