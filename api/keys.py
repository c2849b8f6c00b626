"""The token issuer's asymmetric signing key: created on first start, kept owner-only under var/keys/."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from audit import secret_file

ALGORITHM = "ES256"


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    kid: str
    public_jwk: dict[str, Any]


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public JWK, used as its ``kid``."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _new_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_signing_key(path: Path) -> SigningKey:
    """Load the key at ``path``, creating it first if it does not exist."""
    private_key = serialization.load_pem_private_key(secret_file.load_or_create(path, _new_key_pem), password=None)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    kid = jwk_thumbprint(jwk)
    return SigningKey(private_key, kid, {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"})
