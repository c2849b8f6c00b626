"""The embedded OAuth 2.0 client-credentials issuer, and the bearer-token check every API call uses.

Failed logins are throttled. Each costs a scrypt (about 50 ms of CPU), so a stream of wrong secrets
would occupy the ingress's cores. Failures are counted in Redis, shared by every ingress process, per
client id and per source address (``source_address``: the connection's, or with QGATE_TRUSTED_PROXIES
the one the last trusted proxy appended to X-Forwarded-For), on the
`limits` library's moving window (``ratelimit.logins``). Once either has its limit of failures within
the last window, every login for that client id or from that address, even one with the right secret,
is answered 429 with ``Retry-After`` and no scrypt until the oldest of those failures leaves the window.
Answering a right secret during the lockout would need the scrypt the lockout is there to save, and
would let guessing go on at full speed; the window is short so that a lockout an attacker causes for
someone else's client id costs that client a minute at most. Successful logins are not counted. The
check and the count are separate steps, so requests already in flight when a limit is reached may still
each cost a scrypt: at most one per concurrent request.

Every other authenticated call spends its client's and tenant's request limits (``api.rate_limits``)
once its token is verified, before its scopes are checked: a call refused for a scope still cost work.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import string
from functools import wraps
from typing import Any, Callable

import structlog
from flask import Blueprint, g, jsonify, request

from api import rate_limits
from api.errors import ApiError
from api.services import services
from api.tokens import Principal, TokenError, issue_token, jwks_of
from audit.channel import emit
from ratelimit.limiter import LimiterUnavailable
from ratelimit.policy import CLASSES

bp = Blueprint("auth", __name__)
log = structlog.get_logger("qgate.auth")

MAX_CLIENT_ID_CHARS = 256
MAX_CLIENT_SECRET_CHARS = 256
# RFC 6750 §3: what an error_description may hold (printable ASCII without '"' and '\').
_DESCRIPTION_CHARS = frozenset(string.ascii_letters + string.digits + " !#$%&'()*+,-./:;<=>?@[]^_`{|}~")
_MAX_DESCRIPTION_CHARS = 200


def _authorization(scheme: str) -> str | None:
    """The credentials after ``scheme`` in the Authorization header (the scheme is case-insensitive,
    RFC 7235 §2.1; surrounding whitespace is tolerated), "" if the scheme has none, None if the header is
    absent or names another scheme."""
    parts = request.headers.get("Authorization", "").split(None, 1)
    if not parts or parts[0].lower() != scheme:
        return None
    return parts[1].strip() if len(parts) > 1 else ""


def _client_credentials() -> tuple[str, str]:
    basic = _authorization("basic")
    if basic is not None:
        try:
            client_id, _, secret = base64.b64decode(basic, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "invalid_client: unreadable Basic credentials") from None
        return client_id, secret
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


def source_address() -> str:
    """The caller's address for per-address limits. With QGATE_TRUSTED_PROXIES=N, werkzeug's ProxyFix
    has already replaced ``remote_addr`` with the N-th X-Forwarded-For entry from the right (the one the
    outermost trusted proxy appended; what a caller wrote itself sits further left). A value there that
    is not an IP address (a proxy misconfigured, or reached directly) falls back to the connection's."""
    address = request.remote_addr or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        original = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        return original or "unknown"


def _invalid_client() -> ApiError:
    return ApiError(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="qgate"'})


# --- login failure throttle ----------------------------------------------------------------------------

def _refuse_if_throttled(client_id: str, address: str) -> None:
    """429 with Retry-After while the client id or the address has no failed logins left."""
    try:
        decision = services().login_throttle.refusal(client_id, address)
    except LimiterUnavailable:
        raise rate_limits.unavailable() from None
    if decision is not None:
        log.warning("login_throttled", retry_after_s=decision.retry_after_s, by=decision.limit.kind)
        raise rate_limits.refusal(decision, "too many failed logins; retry later")


def _count_failure(client_id: str, address: str) -> None:
    try:
        services().login_throttle.count_failure(client_id, address)
    except LimiterUnavailable:
        raise rate_limits.unavailable() from None


@bp.post("/oauth/token")
def token() -> Any:
    if request.form.get("grant_type") != "client_credentials":
        raise ApiError(400, "unsupported_grant_type: only client_credentials is supported")
    client_id, secret = _client_credentials()
    if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS or len(secret) > MAX_CLIENT_SECRET_CHARS:
        raise _invalid_client()
    svc = services()
    address = source_address()
    _refuse_if_throttled(client_id, address)
    client = svc.clients.authenticate(client_id, secret)
    if client is None:
        _count_failure(client_id, address)
        raise _invalid_client()
    wanted = request.form.get("scope")
    scopes = list(client.scopes) if not wanted else wanted.split()
    if not set(scopes) <= set(client.scopes):
        refused = " ".join(sorted(set(scopes) - set(client.scopes)))
        raise ApiError(400, "invalid_scope: the client may not have " + refused[:200])
    settings = svc.settings
    access_token = issue_token(svc.signing_key, issuer=settings.issuer, audience=settings.audience,
                               client_id=client.client_id, tenant=client.tenant, scopes=scopes,
                               ttl_s=settings.token_ttl_s)
    emit(svc.redis, "token.issued", tenant=client.tenant, client_id=client.client_id, scope=" ".join(scopes))
    response = jsonify({"access_token": access_token, "token_type": "Bearer", "expires_in": settings.token_ttl_s,
                        "scope": " ".join(scopes)})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Any:
    return jsonify(jwks_of(services().signing_key))


def _challenge(description: str | None = None) -> dict[str, str]:
    """The WWW-Authenticate header; the description cut to the characters RFC 6750 allows there."""
    if description is None:
        return {"WWW-Authenticate": 'Bearer realm="qgate"'}
    safe = "".join(c for c in description if c in _DESCRIPTION_CHARS)[:_MAX_DESCRIPTION_CHARS]
    return {"WWW-Authenticate": f'Bearer realm="qgate", error="invalid_token", error_description="{safe}"'}


def authenticate() -> Principal:
    token = _authorization("bearer")
    if not token:
        raise ApiError(401, "missing bearer token", headers=_challenge())
    try:
        principal = services().verifier.verify(token)
    except TokenError as exc:
        raise ApiError(401, str(exc), headers=_challenge(str(exc))) from None
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, client_id=principal.client_id)
    return principal


def require(*scopes: str, rate: str = "read") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate the bearer token, spend one ``rate`` request (solve or read) of its client and tenant,
    and demand every scope in ``scopes``; the principal lands in ``g``."""
    if rate not in CLASSES:
        raise ValueError(f"unknown request class {rate!r}; one of {CLASSES}")

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            rate_limits.enforce(rate, principal)
            missing = [s for s in scopes if s not in principal.scopes]
            if missing:
                raise ApiError(403, f"missing scope: {' '.join(missing)}", headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(scopes)}"'})
            g.principal = principal
            return view(*args, **kwargs)
        return wrapper
    return decorator
