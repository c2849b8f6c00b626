"""The console's sign-in: client credentials exchanged for a token that stays on the server.

The browser holds only a signed session cookie (``qgate_console``: HttpOnly, SameSite=Strict, Secure on
https, path ``/dashboard``) carrying a random session id and a CSRF token. The access token issued at
sign-in is kept in Redis under that session id (``qgate:console:session:<sha256 of the id>``) for the
token's lifetime, and every page verifies it again like a bearer token, so expiry, a rotated issuer key
and sign-out (the Redis key deleted) end the session. Nothing secret is in a URL, the cookie or a log line.

The cookie is signed with a per-deployment key: ``QGATE_CONSOLE_KEY_FILE``, or a random 32-byte key
created (0600) under ``QGATE_VAR_DIR/keys/`` on first start. Several ingress hosts serving the console
need the same file, as they need the same ``QGATE_JWT_KEY_FILE``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface

from api.errors import ApiError
from api.services import services
from api.tokens import Principal, TokenError, issue_token
from audit import secret_file
from audit.channel import emit

COOKIE = "qgate_console"
CONSOLE_SCOPE = "ops:read"
# Scopes the console's token carries besides ops:read when the client holds them: audit:read lets the
# audit page run a verification (as GET /api/v1/audit/verify requires).
CONSOLE_EXTRA_SCOPES = ("audit:read",)


def session_key(sid: str) -> str:
    return "qgate:console:session:" + hashlib.sha256(sid.encode()).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """The cookie-signing key: read, or created with owner-only permissions by the first process."""
    key = secret_file.load_or_create(path, lambda: secrets.token_bytes(32))
    if len(key) < 32:
        raise RuntimeError(f"{path}: the console session key must hold at least 32 bytes")
    return key


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def configure(app: Flask, key_file: Path) -> None:
    app.secret_key = load_or_create_key(key_file)
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_PATH="/dashboard")
    app.session_interface = ConsoleSessionInterface()


# -- CSRF ------------------------------------------------------------------------------------------------

def csrf_token() -> str:
    """The session's CSRF token (created on first use), put in every form."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """A POST must carry the session's CSRF token, and come from our own origin when the browser says."""
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise ApiError(403, "invalid or missing CSRF token: reload the page and try again")
    origin = request.headers.get("Origin")
    if origin and origin != request.host_url.rstrip("/"):
        raise ApiError(403, "cross-origin form refused")


# -- sign-in ---------------------------------------------------------------------------------------------

class SignInRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign_in(client_id: str, secret: str) -> Principal:
    """Check the client's credentials (throttled as ``POST /oauth/token`` is), demand ops:read, issue a
    token with only that scope and keep it server-side; the session gets a fresh id and CSRF token."""
    from api.auth import (MAX_CLIENT_ID_CHARS, MAX_CLIENT_SECRET_CHARS, _count_failure, _refuse_if_throttled,
                          source_address)

    if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS or len(secret) > MAX_CLIENT_SECRET_CHARS:
        raise SignInRefused(401, "unknown client or wrong secret")
    svc = services()
    address = source_address()
    try:
        _refuse_if_throttled(client_id, address)
    except ApiError as exc:
        raise SignInRefused(exc.status, "too many failed sign-ins: try again in a minute") from None
    client = svc.clients.authenticate(client_id, secret)
    if client is None:
        _count_failure(client_id, address)
        raise SignInRefused(401, "unknown client or wrong secret")
    if CONSOLE_SCOPE not in client.scopes:
        raise SignInRefused(403, f"this client has no {CONSOLE_SCOPE} scope: the console is for operators")
    settings = svc.settings
    token = issue_token(svc.signing_key, issuer=settings.issuer, audience=settings.audience,
                        client_id=client.client_id, tenant=client.tenant,
                        scopes=[CONSOLE_SCOPE, *[scope for scope in CONSOLE_EXTRA_SCOPES if scope in client.scopes]],
                        ttl_s=settings.token_ttl_s)
    emit(svc.redis, "token.issued", tenant=client.tenant, client_id=client.client_id, scope=CONSOLE_SCOPE,
         via="console")
    sid = secrets.token_urlsafe(32)
    svc.redis.set(session_key(sid), token, ex=settings.token_ttl_s)
    session.clear()
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)
    return svc.verifier.verify(token)


def current_principal() -> Principal | None:
    """The signed-in operator, or None (no session, expired, signed out, or the token no longer verifies)."""
    sid = session.get("sid")
    if not isinstance(sid, str):
        return None
    token = services().redis.get(session_key(sid))
    if not token:
        return None
    try:
        principal = services().verifier.verify(token if isinstance(token, str) else token.decode())
    except TokenError:
        return None
    return principal if CONSOLE_SCOPE in principal.scopes else None


def sign_out() -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        services().redis.delete(session_key(sid))
    session.clear()


def template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token}
