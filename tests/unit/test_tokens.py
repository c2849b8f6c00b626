"""Token checks: only our asymmetric keys, right issuer and audience, unexpired, with a known kid."""

from __future__ import annotations

import time
from pathlib import Path
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from api.keys import load_signing_key
from api.tokens import TokenError, TokenVerifier, issue_token, jwks_of


@pytest.fixture
def key(tmp_path: Path):
    return load_signing_key(tmp_path / "keys" / "jwt.pem")


@pytest.fixture
def verifier(key) -> TokenVerifier:
    return TokenVerifier(jwks_of(key), "qgate", "qgate-api")


def _token(key, **overrides) -> str:
    args = dict(issuer="qgate", audience="qgate-api", client_id="c1", tenant="acme",
                scopes=["quantum:solve", "solver:sim"], ttl_s=60)
    args.update(overrides)
    return issue_token(key, **args)


def test_key_is_created_owner_only_and_reused(tmp_path: Path, key) -> None:
    path = tmp_path / "keys" / "jwt.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signing_key(path).kid == key.kid


def test_key_readable_by_others_is_refused(tmp_path: Path, key) -> None:
    path = tmp_path / "keys" / "jwt.pem"
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        load_signing_key(path)


def test_valid_token_gives_the_principal(key, verifier) -> None:
    principal = verifier.verify(_token(key))
    assert principal.client_id == "c1" and principal.tenant == "acme"
    assert principal.scopes == {"quantum:solve", "solver:sim"}


@pytest.mark.parametrize("overrides,message", [
    ({"issuer": "evil"}, "wrong issuer"),
    ({"audience": "other-api"}, "wrong audience"),
    ({"now": time.time() - 3600}, "token expired"),
])
def test_wrong_claims_are_refused(key, verifier, overrides, message) -> None:
    with pytest.raises(TokenError, match=message):
        verifier.verify(_token(key, **overrides))


def _claims() -> dict:
    now = int(time.time())
    return {"iss": "qgate", "aud": "qgate-api", "sub": "c1", "tenant": "acme", "scope": "quantum:solve",
            "iat": now, "exp": now + 60}


def test_alg_none_is_refused(key, verifier) -> None:
    token = jwt.encode(_claims(), None, algorithm="none", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="not accepted"):
        verifier.verify(token)


def test_hs256_signed_with_the_public_key_is_refused(key, verifier) -> None:
    """The classic confusion attack: HMAC keyed with the public key's bytes."""
    token = jwt.encode(_claims(), "x" * 64, algorithm="HS256", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="not accepted"):
        verifier.verify(token)


def test_token_signed_by_another_key_is_refused(key, verifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_claims(), other, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="invalid token"):
        verifier.verify(token)


def test_unknown_kid_and_garbage_are_refused(key, verifier) -> None:
    with pytest.raises(TokenError, match="kid"):
        verifier.verify(jwt.encode(_claims(), key.private_key, algorithm="ES256", headers={"kid": "nope"}))
    with pytest.raises(TokenError, match="malformed"):
        verifier.verify("not.a.token")


def test_missing_tenant_claim_is_refused(key, verifier) -> None:
    claims = _claims()
    del claims["tenant"]
    with pytest.raises(TokenError):
        verifier.verify(jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid}))


@pytest.fixture
def idp(tmp_path: Path):
    """An external IdP: its own key, its JWKS served over real HTTP on loopback."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key = load_signing_key(tmp_path / "idp" / "key.pem")
    body = json.dumps(jwks_of(key)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


def test_tokens_of_a_trusted_external_idp_verify_against_its_own_issuer_only(key, idp) -> None:
    from api.tokens import ExternalIssuer

    idp_key, jwks_url = idp
    verifier = TokenVerifier(jwks_of(key), "qgate", "qgate-api",
                             external=ExternalIssuer("https://idp.example", jwks_url))
    external = _token(idp_key, issuer="https://idp.example", tenant="acme")
    assert verifier.verify(external).tenant == "acme"
    assert verifier.verify(_token(key)).client_id == "c1"
    with pytest.raises(TokenError, match="wrong issuer"):
        verifier.verify(_token(idp_key, issuer="qgate"))  # the IdP's key cannot speak for qgate
    with pytest.raises(TokenError, match="wrong issuer"):
        verifier.verify(_token(key, issuer="https://idp.example"))  # nor ours for the IdP
    unknown = jwt.encode({**_claims(), "iss": "https://idp.example"}, ec.generate_private_key(ec.SECP256R1()),
                         algorithm="ES256", headers={"kid": "not-in-any-jwks"})
    with pytest.raises(TokenError, match="kid"):
        verifier.verify(unknown)


def test_unreachable_external_jwks_is_a_token_error(key) -> None:
    from api.tokens import ExternalIssuer

    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({**_claims(), "iss": "https://idp.example"}, other, algorithm="ES256", headers={"kid": "idp-1"})
    verifier = TokenVerifier(jwks_of(key), "qgate", "qgate-api",
                             external=ExternalIssuer("https://idp.example", "http://127.0.0.1:9/jwks.json", 1))
    with pytest.raises(TokenError, match="cannot be fetched"):
        verifier.verify(token)


def test_the_operator_audit_scope_implies_the_tenant_one() -> None:
    from api.tokens import with_implied

    assert with_implied(frozenset({"audit:admin"})) == {"audit:admin", "audit:read"}
    assert with_implied(frozenset({"audit:read"})) == {"audit:read"}
    assert with_implied(frozenset({"quantum:solve"})) == {"quantum:solve"}


def test_a_verified_token_is_answered_again_without_a_second_signature_check(key, verifier) -> None:
    token = _token(key)
    first = verifier.verify(token)
    with mock.patch("api.tokens.jwt.decode", side_effect=AssertionError("decoded twice")):
        assert verifier.verify(token) == first


def test_a_remembered_token_is_refused_once_it_expires(key, verifier, monkeypatch) -> None:
    token = _token(key, ttl_s=60)
    verifier.verify(token)
    later = time.time() + 60 + verifier.leeway_s + 1
    monkeypatch.setattr("api.tokens.time.time", lambda: later)
    monkeypatch.setattr("jwt.api_jwt.datetime", _Clock(later))
    with pytest.raises(TokenError, match="token expired"):
        verifier.verify(token)


@pytest.mark.parametrize("change", ["last-signature-char", "payload-char", "appended", "header-char"])
def test_any_other_string_than_the_remembered_one_is_checked_in_full(key, verifier, change: str) -> None:
    token = _token(key)
    verifier.verify(token)
    header, payload, signature = token.split(".")
    flip = {"A": "B"}.get(signature[-1], "A")
    altered = {"last-signature-char": f"{header}.{payload}.{signature[:-1]}{flip}",
               "payload-char": f"{header}.{payload[:-2]}{'x' if payload[-2] != 'x' else 'y'}{payload[-1]}.{signature}",
               "appended": token + "A",
               "header-char": f"{header[:-1]}{'x' if header[-1] != 'x' else 'y'}.{payload}.{signature}"}[change]
    with pytest.raises(TokenError):
        verifier.verify(altered)


def test_the_remembered_tokens_are_bounded(key, verifier) -> None:
    from api import tokens

    with mock.patch.object(tokens, "VERIFIED_TOKENS_KEPT", 3):
        for n in range(10):
            verifier.verify(_token(key, client_id=f"c{n}"))
    assert len(verifier._verified) == 3


class _Clock:
    """Stands in for PyJWT's ``datetime`` so that its expiry check sees the same clock as the cache."""

    def __init__(self, now: float) -> None:
        import datetime

        self._now = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
        self.timezone = datetime.timezone

    def now(self, tz: object = None) -> object:
        return self._now
