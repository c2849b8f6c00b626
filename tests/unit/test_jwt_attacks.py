"""The JWT attack matrix, over HTTP on the real app (``create_app`` with fakeredis behind it).

Every forged, tampered, malformed or mistyped token must get a 401 with a JSON ``error`` string: never
a 500, never a 200. A correctly issued token gets a 200 from the same endpoint, so the matrix cannot pass
vacuously. Key-carrying headers (``jku``, ``x5u``, ``jwk``, ``x5c``) are ignored: a local HTTP server
stands behind every URL they name and must never see a request.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import string
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import fakeredis
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, g, jsonify
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm

from api.auth import require
from api.clients import ClientStore
from api.keys import SigningKey, load_signing_key
from api.tokens import ExternalIssuer, TokenError, TokenVerifier, issue_token, jwks_of
from tests.unit.flask_app import fake_redis_app

ISSUER, AUDIENCE = "qgate", "qgate-api"
PROBE = "/_test/whoami"
REAL_ROUTE = "/api/v1/jobs/" + "0" * 32  # a real protected route: 404 once the token is accepted
# RFC 6750 §3: error_description is limited to these characters.
SAFE_HEADER_CHARS = set(string.printable) - set('"\\\t\n\r\x0b\x0c')


# --- encoding helpers -------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    """A JOSE segment: JSON-encode dicts and other values; raw JSON text is passed as ``RawJson``."""
    text = value.text if isinstance(value, RawJson) else json.dumps(value)
    return b64(text.encode())


@dataclass(frozen=True)
class RawJson:
    text: str


Signer = Callable[[bytes], bytes]


def compact(header: Any, claims: Any, sign: Signer | None) -> str:
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64(sign(signing_input.encode()) if sign else b'')}"


def es256(key: ec.EllipticCurvePrivateKey) -> Signer:
    return lambda msg: ECAlgorithm(ECAlgorithm.SHA256).sign(msg, key)


def es384(key: ec.EllipticCurvePrivateKey) -> Signer:
    return lambda msg: ECAlgorithm(ECAlgorithm.SHA384).sign(msg, key)


def hs(bits: int, secret: bytes) -> Signer:
    return lambda msg: hmac.new(secret, msg, getattr(hashlib, f"sha{bits}")).digest()


# --- the attacker's material and a server that must never be asked for anything ----------------------

class KeyServer:
    """Serves the attacker's JWKS / certificate on 127.0.0.1 and counts every request it gets."""

    def __init__(self, body: bytes) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _self_signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qgate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class Ctx:
    """Everything a case needs to build its token."""

    ours: SigningKey
    attacker: ec.EllipticCurvePrivateKey
    attacker_jwk: dict[str, Any]
    attacker_cert_der: bytes
    key_server: KeyServer

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "qc_" + "ab" * 12, "tenant": "acme",
                  "scope": "quantum:solve solver:sim", "iat": now, "nbf": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not DROP}

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"alg": "ES256", "typ": "JWT", "kid": self.ours.kid}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not DROP}

    def signed(self, header: Any = None, claims: Any = None) -> str:
        """Signed with OUR key: only what the case changes makes it wrong."""
        return compact(self.header() if header is None else header, self.claims() if claims is None else claims,
                       es256(self.ours.private_key))

    def forged(self, header: Any = None, claims: Any = None) -> str:
        """Signed with the ATTACKER's key."""
        return compact(self.header() if header is None else header, self.claims() if claims is None else claims,
                       es256(self.attacker))

    def valid(self) -> str:
        return issue_token(self.ours, issuer=ISSUER, audience=AUDIENCE, client_id="qc_" + "cd" * 12,
                           tenant="acme", scopes=["quantum:solve"], ttl_s=300)

    def public_pem(self) -> bytes:
        return self.ours.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


DROP = object()  # a claim or header parameter to leave out


@pytest.fixture(scope="module")
def key_server() -> Iterator[KeyServer]:
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = {**ECAlgorithm.to_jwk(attacker.public_key(), as_dict=True), "kid": "attacker", "alg": "ES256"}
    server = KeyServer(json.dumps({"keys": [jwk]}).encode())
    server.attacker, server.attacker_jwk = attacker, jwk  # type: ignore[attr-defined]
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """The real app; its Redis clients swapped for fakeredis (the URL points at a closed port as a
    tripwire). A probe route behind ``require()`` answers 200 with the principal."""
    app = fake_redis_app(tmp_path_factory.mktemp("qgate"))

    def whoami() -> Any:
        principal = g.principal
        return jsonify({"client_id": principal.client_id, "tenant": principal.tenant,
                        "scopes": sorted(principal.scopes)})

    app.add_url_rule(PROBE, "test_whoami", require()(whoami))
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def ctx(app: Flask, key_server: KeyServer) -> Ctx:
    attacker = key_server.attacker  # type: ignore[attr-defined]
    return Ctx(app.extensions["qgate"].signing_key, attacker, key_server.attacker_jwk,  # type: ignore[attr-defined]
               _self_signed(attacker), key_server)


def _get(client: FlaskClient, token: str, path: str = PROBE) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def _assert_401_json(reply: Any) -> None:
    assert reply.status_code == 401, (reply.status_code, reply.get_data(as_text=True)[:500])
    body = reply.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], reply.data[:300]
    assert len(body["error"]) <= 300  # attacker-sized values are not echoed back whole
    challenge = reply.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")
    description = challenge.partition('error_description="')[2].rpartition('"')[0]
    assert set(description) <= SAFE_HEADER_CHARS, challenge


# --- the matrix ---------------------------------------------------------------------------------------

CASES: dict[str, Callable[[Ctx], str]] = {}


def case(name: str) -> Callable[[Callable[[Ctx], str]], Callable[[Ctx], str]]:
    def register(build: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
        assert name not in CASES, name
        CASES[name] = build
        return build
    return register


# alg none, in every spelling, with and without a signature
for _spelling in ("none", "None", "NONE", "nOnE"):
    CASES[f"alg {_spelling} unsigned"] = lambda c, s=_spelling: compact(c.header(alg=s), c.claims(), None)
    CASES[f"alg {_spelling} with a signature"] = \
        lambda c, s=_spelling: compact(c.header(alg=s), c.claims(), es256(c.ours.private_key))

# HMAC keyed with our public key, as PEM bytes and as the JWK's JSON text
for _bits in (256, 384, 512):
    CASES[f"HS{_bits} keyed with the public PEM"] = \
        lambda c, b=_bits: compact(c.header(alg=f"HS{b}"), c.claims(), hs(b, c.public_pem()))
    CASES[f"HS{_bits} keyed with the public JWK json"] = \
        lambda c, b=_bits: compact(c.header(alg=f"HS{b}"), c.claims(), hs(b, json.dumps(c.ours.public_jwk).encode()))
    CASES[f"HS{_bits} keyed with the public PEM, no kid"] = \
        lambda c, b=_bits: compact(c.header(alg=f"HS{b}", kid=DROP), c.claims(), hs(b, c.public_pem()))

# foreign keys, key ids
case("foreign EC key with our kid")(lambda c: c.forged())
case("foreign P-384 key, alg ES384, our kid")(
    lambda c: compact(c.header(alg="ES384"), c.claims(), es384(ec.generate_private_key(ec.SECP384R1()))))
case("our key but alg ES384 claimed")(lambda c: compact(c.header(alg="ES384"), c.claims(), es256(c.ours.private_key)))
case("unknown kid")(lambda c: c.signed(c.header(kid="nope")))
case("missing kid")(lambda c: c.signed(c.header(kid=DROP)))
case("empty kid")(lambda c: c.signed(c.header(kid="")))
case("huge kid")(lambda c: c.signed(c.header(kid="k" * 10_000)))
for _name, _value in {"int": 1, "list": ["x"], "object": {"kid": "x"}, "null": None, "bool": True}.items():
    CASES[f"kid of type {_name}"] = lambda c, v=_value: c.signed(c.header(kid=v))
    CASES[f"kid of type {_name}, forged"] = lambda c, v=_value: c.forged(c.header(kid=v))
case("kid a list holding our kid")(lambda c: c.signed(c.header(kid=[c.ours.kid])))

# key-carrying headers: ignored, never fetched, never used
case("jku to the attacker's JWKS, attacker kid")(
    lambda c: c.forged(c.header(jku=c.key_server.url + "/jwks.json", kid="attacker")))
case("jku to the attacker's JWKS, our kid")(lambda c: c.forged(c.header(jku=c.key_server.url + "/jwks.json")))
case("jku, no kid")(lambda c: c.forged(c.header(jku=c.key_server.url + "/jwks.json", kid=DROP)))
case("x5u to the attacker's certificate")(lambda c: c.forged(c.header(x5u=c.key_server.url + "/cert.pem")))
case("x5u, no kid")(lambda c: c.forged(c.header(x5u=c.key_server.url + "/cert.pem", kid=DROP)))
case("jwk embedding the attacker's key, our kid")(lambda c: c.forged(c.header(jwk=c.attacker_jwk)))
case("jwk embedding the attacker's key, its kid")(lambda c: c.forged(c.header(jwk=c.attacker_jwk, kid="attacker")))
case("jwk embedding the attacker's key, no kid")(lambda c: c.forged(c.header(jwk=c.attacker_jwk, kid=DROP)))
case("x5c with the attacker's certificate")(
    lambda c: c.forged(c.header(x5c=[base64.b64encode(c.attacker_cert_der).decode()])))
case("x5c, no kid")(lambda c: c.forged(c.header(x5c=[base64.b64encode(c.attacker_cert_der).decode()], kid=DROP)))

# crit (RFC 7515 §4.1.11): we understand no extension, so any crit is refused, even on our own signature
case("crit naming an extension")(lambda c: c.signed(c.header(crit=["exp"], exp=1)))
case("crit b64")(lambda c: c.signed(c.header(crit=["b64"], b64=True)))
case("crit b64 false")(lambda c: c.signed(c.header(crit=["b64"], b64=False)))
case("crit empty list")(lambda c: c.signed(c.header(crit=[])))
case("crit of type string")(lambda c: c.signed(c.header(crit="b64")))
case("crit of type object")(lambda c: c.signed(c.header(crit={"x": 1})))
case("b64 false without crit")(lambda c: c.signed(c.header(b64=False)))

# header values of the wrong JSON type
for _name, _value in {"list": ["ES256"], "object": {"x": 1}, "number": 256, "float": 1.5, "null": None,
                      "true": True, "false": False}.items():
    CASES[f"alg of type {_name}"] = lambda c, v=_value: c.signed(c.header(alg=v))
case("alg missing")(lambda c: c.signed(c.header(alg=DROP)))
case("alg empty")(lambda c: c.signed(c.header(alg="")))
case("alg with a quote and non-latin-1 text")(lambda c: c.signed(c.header(alg='E"S\u20ac256\r\nX: y')))
case("alg huge")(lambda c: c.signed(c.header(alg="A" * 50_000)))
case("typ of type number")(lambda c: c.signed(c.header(typ=1)))
case("typ of type list")(lambda c: c.signed(c.header(typ=["JWT"])))
case("cty of type object")(lambda c: c.signed(c.header(cty={"a": 1})))
case("header is a list")(lambda c: c.signed(["ES256"]))
case("header is a string")(lambda c: c.signed("ES256"))
case("header is not JSON")(lambda c: c.signed(RawJson("{alg: ES256")))

# time claims
case("expired")(lambda c: c.signed(claims=c.claims(iat=int(time.time()) - 7200, nbf=DROP, exp=int(time.time()) - 3600)))
case("nbf in the future")(lambda c: c.signed(claims=c.claims(nbf=int(time.time()) + 3600)))
case("iat in the future")(lambda c: c.signed(claims=c.claims(iat=int(time.time()) + 3600, nbf=DROP)))
case("exp of type string")(lambda c: c.signed(claims=c.claims(exp="tomorrow")))
case("exp of type list")(lambda c: c.signed(claims=c.claims(exp=[int(time.time()) + 60])))


def _exp_as(raw: str) -> Callable[[Ctx], str]:
    """Our token with ``exp`` written as raw JSON number text that json.dumps would never produce."""
    return lambda c: c.signed(claims=RawJson(json.dumps(c.claims(exp=DROP))[:-1] + f', "exp": {raw}}}'))


case("exp infinite (1e999)")(_exp_as("1e999"))
case("exp NaN")(_exp_as("NaN"))
case("exp with 5000 digits")(_exp_as("9" * 5000))
case("iat of type object")(lambda c: c.signed(claims=c.claims(iat={"t": 1})))

# issuer, audience, required claims
case("wrong iss")(lambda c: c.signed(claims=c.claims(iss="https://evil.example")))
case("iss of type list")(lambda c: c.signed(claims=c.claims(iss=[ISSUER])))
case("wrong aud")(lambda c: c.signed(claims=c.claims(aud="another-api")))
case("aud of type object")(lambda c: c.signed(claims=c.claims(aud={"aud": AUDIENCE})))
for _claim in ("exp", "iat", "iss", "aud", "sub", "tenant", "scope"):
    CASES[f"missing {_claim}"] = lambda c, k=_claim: c.signed(claims=c.claims(**{k: DROP}))

# tenant, subject and scope claims: the tenant and subject end up in Redis keys and logs
for _name, _value in {"int": 42, "list": ["acme"], "object": {"t": "acme"}, "null": None, "bool": True,
                      "empty": "", "with ':'": "acme:k2", "65 chars": "a" * 65, "trailing newline": "acme\n",
                      "leading '-'": "-acme", "space": "ac me", "non-ascii": "\u00e4cme", "glob": "acme*",
                      "path": "../acme"}.items():
    CASES[f"tenant {_name}"] = lambda c, v=_value: c.signed(claims=c.claims(tenant=v))
for _name, _value in {"int": 7, "null": None, "list": ["c"], "empty": "", "with ':'": "a:b", "256 chars": "s" * 256,
                      "space": "a b", "newline": "a\nb", "control char": "a\x00b", "non-ascii": "\u00e9"}.items():
    CASES[f"sub {_name}"] = lambda c, v=_value: c.signed(claims=c.claims(sub=v))
for _name, _value in {"int": 1, "list": ["quantum:solve"], "null": None, "object": {"s": 1},
                      "huge": "quantum:solve " * 1000}.items():
    CASES[f"scope {_name}"] = lambda c, v=_value: c.signed(claims=c.claims(scope=v))
case("claims are a list")(lambda c: c.signed(claims=[c.claims()]))
case("claims are not JSON")(lambda c: c.signed(claims=RawJson('{"sub": ')))


# tampering and structure
def _swap_tenant(c: Ctx) -> str:
    header, payload, signature = c.valid().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return f"{header}.{segment({**claims, 'tenant': 'globex'})}.{signature}"


case("tampered payload (tenant swapped, signature kept)")(_swap_tenant)
case("truncated signature")(lambda c: c.valid()[:-4])
case("signature removed")(lambda c: c.valid().rpartition(".")[0] + ".")
case("signature of another token")(lambda c: c.signed(claims=c.claims(tenant="globex")).rpartition(".")[0]
                                   + "." + c.valid().rpartition(".")[2])
case("DER signature instead of raw r||s")(
    lambda c: (lambda si: f"{si}.{b64(c.ours.private_key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))}")(
        f"{segment(c.header())}.{segment(c.claims())}"))
case("garbage segments")(lambda c: "abc.def.ghi")
case("punctuation segments")(lambda c: "!!!.@@@.###")
case("empty segments")(lambda c: "..")
case("latin-1 segments")(lambda c: "\u00e9.\u00e9.\u00e9")
case("padded base64")(lambda c: ".".join(s + "==" for s in c.valid().split(".")))
case("two segments")(lambda c: c.valid().rpartition(".")[0])
case("four segments")(lambda c: c.valid() + ".x")
case("five segments (JWE shape)")(lambda c: c.valid() + ".e30.e30")
case("one segment")(lambda c: c.valid().replace(".", ""))
case("huge token (100 KB)")(lambda c: c.signed(claims=c.claims(pad="x" * 100_000)))
case("huge garbage (100 KB)")(lambda c: "a" * 100_000)


@pytest.mark.parametrize("path", [PROBE, REAL_ROUTE], ids=["probe", "jobs"])
@pytest.mark.parametrize("name", list(CASES))
def test_attack_is_refused_with_a_json_401(client: FlaskClient, ctx: Ctx, name: str, path: str) -> None:
    token = CASES[name](ctx)
    fetched = ctx.key_server.hits
    started = time.perf_counter()
    reply = _get(client, token, path)
    elapsed = time.perf_counter() - started
    _assert_401_json(reply)
    assert ctx.key_server.hits == fetched, "a key-carrying header made the gateway fetch something"
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"


# --- positive controls: the same app, route and helpers accept what is right --------------------------

def test_a_correctly_issued_token_is_accepted(client: FlaskClient, ctx: Ctx) -> None:
    reply = _get(client, ctx.valid())
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json() == {"client_id": "qc_" + "cd" * 12, "tenant": "acme", "scopes": ["quantum:solve"]}
    assert _get(client, ctx.valid(), REAL_ROUTE).status_code == 404  # authenticated: the job just isn't there


def test_a_hand_built_token_is_accepted(client: FlaskClient, ctx: Ctx) -> None:
    """The matrix's own builder makes acceptable tokens: each case differs from this only in its flaw."""
    assert _get(client, ctx.signed()).status_code == 200


def test_key_carrying_headers_on_a_good_token_are_ignored_not_fetched(client: FlaskClient, ctx: Ctx) -> None:
    header = ctx.header(jku=ctx.key_server.url + "/jwks.json", x5u=ctx.key_server.url + "/cert.pem",
                        jwk=ctx.attacker_jwk, x5c=[base64.b64encode(ctx.attacker_cert_der).decode()],
                        typ="at+jwt", cty="JWT")
    fetched = ctx.key_server.hits
    assert _get(client, ctx.signed(header)).status_code == 200
    assert ctx.key_server.hits == fetched


@pytest.mark.parametrize("sub", ["qc_" + "0123456789abcdef01234567", str(uuid.uuid4()), "client@tenant",
                                 "auth0|5f7c8ec7c33c6c004bbafe82", "abc123@clients", "service-account-tms",
                                 "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "-leading-dash_ok", "s" * 255])
def test_typical_subject_ids_are_accepted(client: FlaskClient, ctx: Ctx, sub: str) -> None:
    reply = _get(client, ctx.signed(claims=ctx.claims(sub=sub)))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json()["client_id"] == sub


@pytest.mark.parametrize("tenant", ["acme", "a", "A.b-c_d", "0acme", "t" * 64])
def test_tenants_matching_the_pattern_are_accepted(client: FlaskClient, ctx: Ctx, tenant: str) -> None:
    reply = _get(client, ctx.signed(claims=ctx.claims(tenant=tenant)))
    assert reply.status_code == 200 and reply.get_json()["tenant"] == tenant


def test_unknown_scopes_are_dropped_not_errors(client: FlaskClient, ctx: Ctx) -> None:
    reply = _get(client, ctx.signed(claims=ctx.claims(scope="quantum:solve root:all  audit:read openid")))
    assert reply.status_code == 200
    assert reply.get_json()["scopes"] == ["audit:read", "quantum:solve"]
    empty = _get(client, ctx.signed(claims=ctx.claims(scope="")))
    assert empty.status_code == 200 and empty.get_json()["scopes"] == []


def test_a_refused_token_says_why(client: FlaskClient, ctx: Ctx) -> None:
    """A few messages the caller can act on (and that the checks above are not all the same one)."""
    def error(token: str) -> str:
        return _get(client, token).get_json()["error"]
    assert "crit" in error(CASES["crit b64"](ctx))
    assert error(CASES["tenant with ':'"](ctx)) == "invalid tenant claim"
    assert error(CASES["sub with ':'"](ctx)) == "invalid subject claim"
    assert error(CASES["scope list"](ctx)) == "invalid scope claim"
    assert "alg" in error(CASES["alg of type list"](ctx))
    assert "kid" in error(CASES["kid of type int"](ctx))


# --- the Authorization scheme is case-insensitive (RFC 7235 §2.1) -------------------------------------

@pytest.mark.parametrize("template", ["Bearer {}", "bearer {}", "BEARER {}", "bEaReR {}", "Bearer    {}",
                                      "  Bearer {}  ", "Bearer\t{}"])
def test_bearer_scheme_is_case_insensitive(client: FlaskClient, ctx: Ctx, template: str) -> None:
    reply = client.get(PROBE, headers={"Authorization": template.format(ctx.valid())})
    assert reply.status_code == 200, reply.get_data(as_text=True)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "bearer    ", "Basic Zm9vOmJhcg==", "Token abc",
                                    "abc.def.ghi", "", "Bearerabc.def.ghi", "Bearer a b"])
def test_missing_or_empty_bearer_token_is_401(client: FlaskClient, header: str) -> None:
    reply = client.get(PROBE, headers={"Authorization": header})
    _assert_401_json(reply)


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "  Basic  "])
def test_basic_scheme_is_case_insensitive_at_the_token_endpoint(app: Flask, client: FlaskClient,
                                                               scheme: str) -> None:
    created, secret = app.extensions["qgate"].clients.create("acme", ["quantum:solve"])
    credentials = base64.b64encode(f"{created.client_id}:{secret}".encode()).decode()
    reply = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"{scheme} {credentials}"})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json()["token_type"] == "Bearer"


@pytest.mark.parametrize("header", ["Basic", "Basic ", "basic !!!", "Basic " + base64.b64encode(b"\xff:\xfe").decode()])
def test_unreadable_basic_credentials_are_401(client: FlaskClient, header: str) -> None:
    reply = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header})
    assert reply.status_code == 401 and reply.get_json()["error"].startswith("invalid_client")


# --- every token source holds tenants to the same pattern ---------------------------------------------

@pytest.mark.parametrize("tenant", ["acme\n", "", "acme:k2", "a" * 65, "-acme"])
def test_client_store_refuses_tenants_off_the_pattern(tenant: str) -> None:
    with pytest.raises(ValueError):
        ClientStore(fakeredis.FakeRedis(decode_responses=True)).create(tenant, ["quantum:solve"])


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[tuple[SigningKey, KeyServer]]:
    """An external IdP: its own key, its JWKS served on loopback (counting fetches)."""
    key = load_signing_key(tmp_path / "idp" / "key.pem")
    server = KeyServer(json.dumps(jwks_of(key)).encode())
    yield key, server
    server.close()


@pytest.mark.parametrize("tenant", ["", "acme:k2", "a" * 65, "acme\n"])
def test_external_idp_tokens_with_bad_tenants_are_refused(tmp_path: Path, idp: tuple[SigningKey, KeyServer],
                                                          tenant: str) -> None:
    idp_key, server = idp
    ours = load_signing_key(tmp_path / "ours" / "key.pem")
    verifier = TokenVerifier(jwks_of(ours), ISSUER, AUDIENCE,
                             external=ExternalIssuer("https://idp.example", server.url + "/jwks.json"))
    good = issue_token(idp_key, issuer="https://idp.example", audience=AUDIENCE, client_id="tms@acme",
                       tenant="acme", scopes=["quantum:solve"], ttl_s=60)
    assert verifier.verify(good).tenant == "acme"
    bad = issue_token(idp_key, issuer="https://idp.example", audience=AUDIENCE, client_id="tms@acme",
                      tenant=tenant, scopes=["quantum:solve"], ttl_s=60)
    with pytest.raises(TokenError, match="invalid tenant claim"):
        verifier.verify(bad)


def test_unknown_kids_do_not_make_the_gateway_refetch_the_idp_jwks_each_time(
        tmp_path: Path, idp: tuple[SigningKey, KeyServer]) -> None:
    """A flood of random kids must not turn into a flood of JWKS fetches (PyJWKClient's cooldown)."""
    idp_key, server = idp
    verifier = TokenVerifier(jwks_of(load_signing_key(tmp_path / "ours" / "key.pem")), ISSUER, AUDIENCE,
                             external=ExternalIssuer("https://idp.example", server.url + "/jwks.json"))
    claims = {"iss": "https://idp.example", "aud": AUDIENCE, "sub": "x", "tenant": "acme", "scope": "",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    for _ in range(20):
        token = compact({"alg": "ES256", "kid": uuid.uuid4().hex}, claims, es256(idp_key.private_key))
        with pytest.raises(TokenError, match="kid"):
            verifier.verify(token)
    assert server.hits <= 2
