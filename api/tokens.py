"""JWT access tokens: issued for clients, verified on every API call.

Verification is strict by construction. Before any key is touched, the token must be at most
MAX_TOKEN_CHARS long and its header well-typed: ``alg`` a string on an allow-list of asymmetric
algorithms (so ``none`` and every HS* are refused), ``kid`` a bounded string naming a known key whose own
algorithm matches, no ``crit`` (we implement no extension, and RFC 7515 §4.1.11 says a recipient that
does not understand one MUST refuse the token). Key-carrying parameters (``jku``, ``x5u``, ``jwk``,
``x5c``) are never read: keys come only from our JWKS and the configured IdP's. ``iss``, ``aud``, ``exp``,
``iat``, ``sub``, ``tenant`` and ``scope`` are required; ``tenant`` and ``sub`` must match
TENANT_PATTERN and SUBJECT_PATTERN whoever issued the token, because both end up in Redis keys, job
records, the audit log and log lines.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from api.keys import ALGORITHM, SigningKey

ALLOWED_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "PS256", "EdDSA"})
SCOPES = frozenset({"quantum:solve", "solver:qpu", "solver:sim", "solver:heuristic", "tier:premium",
                    "audit:read", "audit:admin", "ops:read"})
# An operator scope implies the tenant scope of the same area: an auditor of every tenant can read its own.
IMPLIED_SCOPES = {"audit:admin": frozenset({"audit:read"})}


def with_implied(scopes: frozenset[str]) -> frozenset[str]:
    """The scopes a token grants, with those its scopes imply."""
    return scopes.union(*(IMPLIED_SCOPES.get(scope, frozenset()) for scope in scopes))


REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "tenant", "scope")
# A tenant names Redis keys (qgate:rate:<tenant>:..., the active-job set): no ':', no glob characters,
# no whitespace, no path segments. Anchored with \Z: '$' would also match before a final newline.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# A subject (our client ids, ``qc_`` + hex, or an IdP's: UUIDs, ``client@tenant``, ``auth0|...``, base64url
# ids) lands in job records and logs: printable ASCII without ':', whitespace, quotes or glob characters,
# and at most 255 characters (the OpenID Connect bound for ``sub``).
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_.@|+=~-]{1,255}\Z")
MAX_TOKEN_CHARS = 8192  # our tokens are ~600 characters; gunicorn refuses header fields above 8190 bytes
MAX_KID_CHARS = 256
MAX_SCOPE_CHARS = 1024
STRING_HEADERS = ("alg", "kid", "typ", "cty")


class TokenError(Exception):
    """The token is not acceptable; the message says why (safe to show the caller: it never echoes
    what the token holds)."""


@dataclass(frozen=True)
class Principal:
    client_id: str
    tenant: str
    scopes: frozenset[str]


def is_tenant(value: Any) -> bool:
    return isinstance(value, str) and TENANT_PATTERN.match(value) is not None


def is_subject(value: Any) -> bool:
    return isinstance(value, str) and SUBJECT_PATTERN.match(value) is not None


def issue_token(key: SigningKey, *, issuer: str, audience: str, client_id: str, tenant: str,
                scopes: list[str], ttl_s: int, now: float | None = None) -> str:
    now = int(time.time() if now is None else now)
    claims = {"iss": issuer, "aud": audience, "sub": client_id, "tenant": tenant, "scope": " ".join(scopes),
              "iat": now, "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


class ExternalIssuer:
    """An external IdP whose tokens the gateway also accepts: its JWKS URL and its own ``iss``.

    Each key source is bound to its issuer, so a key from the IdP's JWKS can never sign a token that
    claims to come from qgate's own issuer, and the other way round. PyJWKClient refetches the JWKS for an
    unknown ``kid`` at most once per cooldown (30 s), so random kids cannot turn into a fetch per request.
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


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header as JSON, before anything else is checked (PyJWT's own reader would refuse some
    mistyped parameters as merely "malformed"; this one lets the caller be told which)."""
    segments = token.split(".")
    if len(segments) != 3:
        raise TokenError("malformed token: a signed JWT has three segments")
    encoded = segments[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise TokenError("malformed token") from None
    if not isinstance(header, dict):
        raise TokenError("malformed token: the header is not a JSON object")
    return header


def _checked_header(token: str) -> tuple[str, str]:
    """The header's ``alg`` and ``kid`` once the header is well-formed and well-typed."""
    header = _unverified_header(token)
    if "crit" in header:
        raise TokenError("critical header extensions (crit) are not supported")
    if header.get("b64", True) is not True:
        raise TokenError("unencoded payloads (b64) are not supported")
    for name in STRING_HEADERS:
        if name in header and not isinstance(header[name], str):
            raise TokenError(f"header parameter {name} must be a string")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenError("algorithm (alg) is missing or not accepted")
    if not kid or len(kid) > MAX_KID_CHARS:
        raise TokenError("unknown or missing key id (kid)")
    return alg, kid


def _principal(claims: Mapping[str, Any]) -> Principal:
    """The caller named by verified claims, whose values must still be of the right shape."""
    if not is_tenant(claims["tenant"]):
        raise TokenError("invalid tenant claim")
    if not is_subject(claims["sub"]):
        raise TokenError("invalid subject claim")
    scope = claims["scope"]
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_CHARS:
        raise TokenError("invalid scope claim")
    return Principal(claims["sub"], claims["tenant"], with_implied(frozenset(scope.split()) & SCOPES))


VERIFIED_TOKENS_KEPT = 4096


class TokenVerifier:
    """Checks tokens against our own public keys by ``kid`` (a JWKS), and optionally an external IdP's.

    A TMS sends the same token with every call until it expires, so a token signed by one of our own
    keys is remembered once verified: the exact token string, the caller it names and its expiry. A
    remembered token is answered without re-parsing or re-checking its signature (an ECDSA verify and
    PyJWT's parsing, about a tenth of an async submit), and only until its ``exp`` (with the same
    leeway) has passed; any other string, a one-byte change included, takes the full path. Tokens of
    an external issuer are always checked in full, since their keys can be withdrawn at the IdP.
    """

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
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, kid: str) -> tuple[jwt.PyJWK | None, str]:
        """The key for ``kid`` and the issuer its tokens must name."""
        if kid in self.keys:
            return self.keys[kid], self.issuer
        if self.external is not None:
            return self.external.key(kid), self.external.issuer
        return None, self.issuer

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered
        alg, kid = _checked_header(token)
        key, issuer = self._key(kid)
        if key is None:
            raise TokenError("unknown or missing key id (kid)")
        if key.algorithm_name != alg:
            raise TokenError("algorithm (alg) does not match the key's")
        claims = self._decode(token, key, alg, issuer)
        principal = _principal(claims)
        if kid in self.keys:
            self._remember(token, principal, claims["exp"])
        return principal

    def _remembered(self, token: str) -> Principal | None:
        with self._lock:
            entry = self._verified.get(token)
            if entry is None:
                return None
            principal, expires = entry
            if expires <= time.time() - self.leeway_s:  # PyJWT's own expiry rule, so the full path says why
                del self._verified[token]
                return None
            self._verified.move_to_end(token)
            return principal

    def _remember(self, token: str, principal: Principal, expires: Any) -> None:
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return
        with self._lock:
            self._verified[token] = (principal, float(expires))
            while len(self._verified) > VERIFIED_TOKENS_KEPT:
                self._verified.popitem(last=False)

    def _decode(self, token: str, key: jwt.PyJWK, alg: str, issuer: str) -> dict[str, Any]:
        """Signature and registered claims checked; the claims. Messages are ours, not PyJWT's."""
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=self.audience, issuer=issuer,
                              leeway=self.leeway_s, options={"require": list(REQUIRED_CLAIMS)})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"missing required claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise TokenError("invalid token: signature verification failed") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None


def jwks_of(key: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk]}
