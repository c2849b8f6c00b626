"""The embedded OAuth 2.0 client-credentials issuer, and the bearer-token check every API call uses."""

from __future__ import annotations

import base64
import binascii
import time
from functools import wraps
from typing import Any, Callable

import structlog
from flask import Blueprint, g, jsonify, request

from api.errors import ApiError
from api.services import services
from api.tokens import Principal, TokenError, issue_token, jwks_of
from audit.channel import emit

bp = Blueprint("auth", __name__)


def _client_credentials() -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "invalid_client: unreadable Basic credentials") from None
        return client_id, secret
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


@bp.post("/oauth/token")
def token() -> Any:
    if request.form.get("grant_type") != "client_credentials":
        raise ApiError(400, "unsupported_grant_type: only client_credentials is supported")
    client_id, secret = _client_credentials()
    svc = services()
    client = svc.clients.authenticate(client_id, secret)
    if client is None:
        raise ApiError(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="qgate"'})
    wanted = request.form.get("scope")
    scopes = list(client.scopes) if not wanted else wanted.split()
    if not set(scopes) <= set(client.scopes):
        raise ApiError(400, "invalid_scope: the client may not have " + " ".join(sorted(set(scopes) - set(client.scopes))))
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


def authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="qgate"'})
    try:
        principal = services().verifier.verify(header[7:].strip())
    except TokenError as exc:
        raise ApiError(401, str(exc), headers={
            "WWW-Authenticate": f'Bearer realm="qgate", error="invalid_token", error_description="{exc}"'}) from None
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, client_id=principal.client_id)
    return principal


def require(*scopes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate the bearer token and demand every scope in ``scopes``; the principal lands in ``g``."""
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            missing = [s for s in scopes if s not in principal.scopes]
            if missing:
                raise ApiError(403, f"missing scope: {' '.join(missing)}", headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(scopes)}"'})
            g.principal = principal
            return view(*args, **kwargs)
        return wrapper
    return decorator


def enforce_rate_limit(principal: Principal) -> None:
    """Fixed one-minute window per tenant, shared by every ingress through Redis."""
    limit = services().settings.rate_limit_per_minute
    if limit <= 0:
        return
    window = int(time.time() // 60)
    key = f"qgate:rate:{principal.tenant}:{window}"
    pipe = services().redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    if count > limit:
        retry = str(60 - int(time.time()) % 60)
        raise ApiError(429, f"rate limit: {limit} requests per minute for tenant", headers={"Retry-After": retry})
