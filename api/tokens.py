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


class ExternalIssuer:
    """An external IdP whose tokens the gateway also accepts: its JWKS URL and its own ``iss``.

    Each key source is bound to its issuer, so a key from the IdP's JWKS can never sign a token that
    claims to come from qgate's own issuer, and the other way round.
    """

    def __init__(self, issuer: str, jwks_url: str, timeout_s: float = 5) -> None:
        self.issuer = issuer
        self.client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=timeout_s)

    def key(self, kid: str) -> jwt.PyJWK | None:
        try:
            return self.client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise TokenError("the trusted identity provider's keys cannot be fetched") from None
        except jwt.PyJWKClientError:
            return None


class TokenVerifier:
    """Checks tokens against our own public keys by ``kid`` (a JWKS), and optionally an external IdP's."""

    def __init__(self, jwks: Mapping[str, Any], issuer: str, audience: str, leeway_s: int = 30,
                 external: ExternalIssuer | None = None) -> None:
        self.keys: dict[str, jwt.PyJWK] = {}
        for jwk in jwks.get("keys", []):
            parsed = jwt.PyJWK.from_dict(jwk)
            if parsed.algorithm_name not in ALLOWED_ALGORITHMS:
                raise ValueError(f"key {jwk.get('kid')} uses {parsed.algorithm_name}, which is not allowed")
            self.keys[jwk["kid"]] = parsed
        self.issuer, self.audience, self.leeway_s = issuer, audience, leeway_s
        self.external = external

    def _key(self, kid: Any) -> tuple[jwt.PyJWK | None, str]:
        """The key for ``kid`` and the issuer its tokens must name."""
        if not isinstance(kid, str):
            return None, self.issuer
        if kid in self.keys:
            return self.keys[kid], self.issuer
        if self.external is not None:
            return self.external.key(kid), self.external.issuer
        return None, self.issuer

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenError(f"algorithm {alg!r} is not accepted")
        key, issuer = self._key(kid)
        if key is None:
            raise TokenError("unknown or missing key id (kid)")
        if key.algorithm_name != alg:
            raise TokenError(f"algorithm {alg!r} does not match the key's {key.algorithm_name!r}")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=self.audience, issuer=issuer,
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
