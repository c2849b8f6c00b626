"""JWT access tokens: issued for clients, verified on every API call.

Verification is strict by construction: the header's algorithm must be on an allow-list of asymmetric
algorithms (so ``none`` and every HS* are refused before any key is touched), the ``kid`` must name a
known key whose own algorithm matches, and ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` and ``tenant``
are required.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from api.keys import ALGORITHM, SigningKey

ALLOWED_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "PS256", "EdDSA"})
SCOPES = frozenset({"quantum:solve", "solver:qpu", "solver:sim", "solver:heuristic", "tier:premium",
                    "audit:read", "audit:admin", "ops:read"})


class TokenError(Exception):
    """The token is not acceptable; the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class Principal:
    client_id: str
    tenant: str
    scopes: frozenset[str]


def issue_token(key: SigningKey, *, issuer: str, audience: str, client_id: str, tenant: str,
                scopes: list[str], ttl_s: int, now: float | None = None) -> str:
    now = int(time.time() if now is None else now)
    claims = {"iss": issuer, "aud": audience, "sub": client_id, "tenant": tenant, "scope": " ".join(scopes),
              "iat": now, "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


class TokenVerifier:
    """Checks tokens against a fixed set of public keys by ``kid`` (a JWKS)."""

    def __init__(self, jwks: Mapping[str, Any], issuer: str, audience: str, leeway_s: int = 30) -> None:
        self.keys: dict[str, jwt.PyJWK] = {}
        for jwk in jwks.get("keys", []):
            parsed = jwt.PyJWK.from_dict(jwk)
            if parsed.algorithm_name not in ALLOWED_ALGORITHMS:
                raise ValueError(f"key {jwk.get('kid')} uses {parsed.algorithm_name}, which is not allowed")
            self.keys[jwk["kid"]] = parsed
        self.issuer, self.audience, self.leeway_s = issuer, audience, leeway_s

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenError(f"algorithm {alg!r} is not accepted")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown or missing key id (kid)")
        if key.algorithm_name != alg:
            raise TokenError(f"algorithm {alg!r} does not match the key's {key.algorithm_name!r}")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway_s,
                                options={"require": ["exp", "iat", "iss", "aud", "sub", "tenant", "scope"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if not isinstance(claims["tenant"], str) or not isinstance(claims["scope"], str):
            raise TokenError("invalid tenant or scope claim")
        return Principal(claims["sub"], claims["tenant"], frozenset(claims["scope"].split()))


def jwks_of(key: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk]}
