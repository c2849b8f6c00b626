"""Bad input gets a JSON error with an exact status code, never a 500."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from api.keys import load_signing_key
from tests.integration import problems
from tests.integration.stack import Stack

SOLVE = "/api/v1/quantum/solve"


def _post(stack: Stack, headers: dict, **kwargs) -> requests.Response:
    return requests.post(stack.url + SOLVE, headers=headers, timeout=30, **kwargs)


def _forged(stack: Stack, **changes) -> str:
    """A token signed with the stack's own key, with some claims changed."""
    key = load_signing_key(Path(stack.env["QGATE_VAR_DIR"]) / "keys" / "jwt-es256.pem")
    now = int(time.time())
    claims = {"iss": "qgate", "aud": "qgate-api", "sub": "c", "tenant": "acme", "scope": "quantum:solve",
              "iat": now, "exp": now + 60, **changes}
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})


def _tokens(stack: Stack) -> dict[str, str]:
    key = load_signing_key(Path(stack.env["QGATE_VAR_DIR"]) / "keys" / "jwt-es256.pem")
    now = int(time.time())
    claims = {"iss": "qgate", "aud": "qgate-api", "sub": "c", "tenant": "acme", "scope": "quantum:solve",
              "iat": now, "exp": now + 60}
    return {
        "expired": _forged(stack, iat=now - 7200, exp=now - 3600),
        "wrong issuer": _forged(stack, iss="https://evil.example"),
        "wrong audience": _forged(stack, aud="another-api"),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid}),
        "hs256": jwt.encode(claims, "k" * 64, algorithm="HS256", headers={"kid": key.kid}),
        "foreign key": jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                                  headers={"kid": key.kid}),
        "garbage": "abc.def.ghi",
    }


def test_missing_token_is_401(stack: Stack) -> None:
    reply = _post(stack, {}, json={"problem": problems.tsp(5)})
    assert reply.status_code == 401 and reply.json()["error"] == "missing bearer token"
    assert "Bearer" in reply.headers["WWW-Authenticate"]


@pytest.mark.parametrize("case", ["expired", "wrong issuer", "wrong audience", "alg none", "hs256",
                                  "foreign key", "garbage"])
def test_bad_tokens_are_401(stack: Stack, case: str) -> None:
    reply = _post(stack, {"Authorization": f"Bearer {_tokens(stack)[case]}"}, json={"problem": problems.tsp(5)})
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]


def test_wrong_client_secret_is_401(stack: Stack, client: dict) -> None:
    reply = requests.post(stack.url + "/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(client["client_id"], "wrong"), timeout=10)
    assert reply.status_code == 401 and reply.json()["error"] == "invalid_client"


def test_token_endpoint_refuses_other_grants_and_wider_scopes(stack: Stack, client: dict) -> None:
    auth = (client["client_id"], client["client_secret"])
    assert requests.post(stack.url + "/oauth/token", data={"grant_type": "password"}, auth=auth,
                         timeout=10).status_code == 400
    assert requests.post(stack.url + "/oauth/token", data={"grant_type": "client_credentials",
                                                           "scope": "audit:admin"}, auth=auth,
                         timeout=10).status_code == 400


def test_jwks_publishes_the_public_key_only(stack: Stack) -> None:
    keys = requests.get(stack.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256" and "d" not in keys[0]


def test_missing_scopes_are_403(stack: Stack) -> None:
    limited = stack.token(stack.create_client("acme", "quantum:solve solver:heuristic"))
    headers = {"Authorization": f"Bearer {limited}"}
    assert _post(stack, headers, json={"problem": problems.circuit(), "solver": "sim"}).status_code == 403
    assert _post(stack, headers, json={"problem": problems.tsp(5), "cost_tier": "premium"}).status_code == 403
    no_solve = stack.token(stack.create_client("acme", "audit:read"))
    reply = _post(stack, {"Authorization": f"Bearer {no_solve}"}, json={"problem": problems.tsp(5)})
    assert reply.status_code == 403 and "quantum:solve" in reply.json()["error"]
    verify = requests.get(stack.url + "/api/v1/audit/verify", headers=headers, timeout=10)
    assert verify.status_code == 403


def test_lanes_without_scope_are_skipped_with_the_reason(stack: Stack) -> None:
    limited = stack.token(stack.create_client("acme", "quantum:solve solver:sim"))
    reply = stack.solve(limited, {"problem": problems.circuit()}, budget_ms=1000)
    assert reply.status_code == 200, reply.text
    assert reply.json()["plan"][0] == {"lane": "qpu", "action": "skip", "reason": "policy: scope: the client lacks solver:qpu"}
    assert reply.json()["solver"]["lane"] == "sim"
    no_lane = stack.solve(limited, {"problem": problems.tsp(6)}, budget_ms=1000)  # 25 qubits: beyond QAOA
    assert no_lane.status_code == 422 and no_lane.json()["error"] == "no lane can solve this problem"


def test_unreadable_json_is_400(stack: Stack, token: str) -> None:
    headers = {**stack.headers(token), "Content-Type": "application/json"}
    reply = _post(stack, headers, data=b'{"problem": ')
    assert reply.status_code == 400 and reply.json()["error"] == "request body is not readable JSON"


INVALID = {
    "not an object": ([1, 2], ["body"]),
    "no problem": ({"solver": "auto"}, ["body", "problem"]),
    "unknown field": ({"problem": problems.tsp(4), "colour": "red"}, ["body", "colour"]),
    "unknown solver": ({"problem": problems.tsp(4), "solver": "oracle"}, ["body", "solver"]),
    "portfolio_pinned": ({"problem": problems.tsp(4), "strategy": "portfolio", "solver": "sim"}, ["body", "solver"]),
    "shadow_unknown": ({"problem": problems.tsp(4), "shadow": ["gpu"]}, ["body", "shadow", 0]),
    "shadow_twice": ({"problem": problems.tsp(4), "shadow": ["sim", "sim"]}, ["body", "shadow"]),
    "unknown kind": ({"problem": {"kind": "knapsack"}}, ["body", "problem", "kind"]),
    "tsp ragged": ({"problem": {"kind": "tsp", "distances": [[0, 1], [1]]}}, ["body", "problem", "tsp"]),
    "tsp negative": ({"problem": {"kind": "tsp", "distances": [[0, -1], [1, 0]]}}, ["body", "problem", "tsp"]),
    "cvrp demand": ({"problem": {**problems.cvrp(4), "demands": [0, 1]}}, ["body", "problem", "cvrp"]),
    "assignment weights": ({"problem": {**problems.assignment(), "weights": [1]}}, ["body", "problem", "assignment"]),
    "qubo index": ({"problem": {"kind": "qubo", "n": 2, "terms": [[0, 5, 1]]}}, ["body", "problem", "qubo"]),
    "circuit qasm": ({"problem": {"kind": "circuit", "qasm": "nonsense", "shots": 10}},
                     ["body", "problem", "circuit", "qasm"]),
    "seed": ({"problem": problems.tsp(4), "seed": -1}, ["body", "seed"]),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_requests_are_422_with_loc(stack: Stack, token: str, case: str) -> None:
    body, loc = INVALID[case]
    reply = stack.solve(token, body, budget_ms=1000)
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert errors[0]["loc"][:len(loc)] == loc and errors[0]["msg"]


@pytest.mark.parametrize("budget", ["0", "-5", "soon", "99999999999"])
def test_bad_budget_header_is_422(stack: Stack, token: str, budget: str) -> None:
    reply = _post(stack, {**stack.headers(token), "X-Latency-Budget-Ms": budget}, json={"problem": problems.tsp(4)})
    assert reply.status_code == 422 and reply.json()["errors"][0]["loc"] == ["header", "X-Latency-Budget-Ms"]


def test_oversize_body_is_413(stack: Stack, token: str) -> None:
    big = b'{"problem": {"kind": "tsp", "distances": [' + b"0," * (5 * 1024 * 1024) + b"0]}}"
    reply = _post(stack, {**stack.headers(token), "Content-Type": "application/json"}, data=big)
    assert reply.status_code == 413 and reply.json()["error"] == "request body too large"


def test_other_tenants_jobs_are_404(stack: Stack, token: str) -> None:
    reply = stack.solve(token, {"problem": problems.tsp(5)}, budget_ms=1000)
    job_id = reply.json()["job_id"]
    other = stack.token(stack.create_client("globex", "quantum:solve solver:heuristic audit:read"))
    assert stack.job(other, job_id).status_code == 404
    assert requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(other),
                           timeout=10).status_code == 404
    assert requests.get(f"{stack.url}/api/v1/audit/jobs/{job_id}", headers=stack.headers(other),
                        timeout=10).status_code == 404
    assert stack.job(token, "0" * 32).status_code == 404


def test_unknown_route_is_json_404(stack: Stack) -> None:
    reply = requests.get(stack.url + "/nope", timeout=10)
    assert reply.status_code == 404 and reply.json() == {"error": "not found"}


def test_openapi_describes_the_solve_endpoint(stack: Stack) -> None:
    doc = requests.get(stack.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/quantum/solve" in doc["paths"] and "Job" in doc["components"]["schemas"]
    assert {"/api/v1/audit/checkpoint", "/api/v1/audit/proof/inclusion", "/api/v1/audit/jobs/{job_id}/receipt"} <= set(doc["paths"])


def test_redis_down_is_503(tmp_path: Path) -> None:
    """A separate small stack (Redis and the web ingress only), so the shared one keeps its Redis."""
    mini = Stack(tmp_path)
    mini.start_redis()
    try:
        mini.start_web()
        client = mini.create_client("acme", "quantum:solve solver:heuristic")
        token = mini.token(client)
        mini.stop_redis()
        reply = mini.solve(token, {"problem": problems.tsp(5)}, budget_ms=1000)
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"] and reply.headers["Retry-After"]
        token_reply = requests.post(mini.url + "/oauth/token", data={"grant_type": "client_credentials"},
                                    auth=(client["client_id"], client["client_secret"]), timeout=10)
        assert token_reply.status_code == 503
        assert requests.get(mini.url + "/readyz", timeout=10).status_code == 503
    finally:
        mini.stop()


def test_metrics_are_for_operators_only(stack: Stack, token: str) -> None:
    """ops:read was declared but never enforced: anyone could read fleet-wide counters."""
    assert requests.get(stack.url + "/metrics", timeout=10).status_code == 401
    solver = stack.token(stack.create_client("acme", "quantum:solve solver:heuristic"))
    reply = requests.get(stack.url + "/metrics", headers=stack.headers(solver), timeout=10)
    assert reply.status_code == 403 and reply.json()["error"] == "missing scope: ops:read"
    reply = requests.get(stack.url + "/metrics", headers=stack.headers(token), timeout=10)
    assert reply.status_code == 200 and "qgate_http_requests_total" in reply.text


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u0661\u0662", "1" * 5000, "12 34", "+5", "0x10", "1e3"])
def test_budget_header_digits_outside_ascii_are_422(stack: Stack, token: str, value: str) -> None:
    headers = {**stack.headers(token), "X-Latency-Budget-Ms": value.encode("utf-8").decode("latin-1")}
    reply = _post(stack, headers, json={"problem": problems.tsp(4)})
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["loc"] == ["header", "X-Latency-Budget-Ms"]


@pytest.mark.parametrize("value", ["\u00b2", "\u0662", "-1", "1" * 40, "", "1.0"])
def test_audit_index_arguments_outside_ascii_digits_are_400(stack: Stack, token: str, value: str) -> None:
    reply = requests.get(stack.url + "/api/v1/audit/proof/inclusion", params={"index": value, "size": "1"},
                         headers=stack.headers(token), timeout=10)
    assert reply.status_code == 400 and reply.json()["error"], reply.text
    assert reply.json()["errors"][0]["loc"] == ["query", "index"], reply.text


BAD_QUERIES = {
    "inclusion index not below size": ("/api/v1/audit/proof/inclusion", {"index": "5", "size": "1"}, "index"),
    "consistency first zero": ("/api/v1/audit/proof/consistency", {"first": "0", "second": "1"}, "first"),
    "entries end before start": ("/api/v1/audit/entries", {"start": "5", "end": "1"}, "end"),
    "entries size unbounded": ("/api/v1/audit/entries", {"start": "0", "end": "99999"}, "end"),
    "usage from not a date": ("/api/v1/usage", {"from": "yesterday"}, "from"),
    "usage to not a real date": ("/api/v1/usage", {"to": "2026-02-31"}, "to"),
    "usage from after to": ("/api/v1/usage", {"from": "2026-02-02", "to": "2026-02-01"}, "from"),
    "usage group_by": ("/api/v1/usage", {"group_by": "colour"}, "group_by"),
    "usage format": ("/api/v1/usage", {"format": "xml"}, "format"),
    "usage tenant": ("/api/v1/usage", {"tenant": "a b"}, "tenant"),
}


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
def test_bad_query_parameters_are_400_with_their_loc(stack: Stack, token: str, case: str) -> None:
    path, params, name = BAD_QUERIES[case]
    if path.startswith("/api/v1/audit"):
        stack.solve(token, {"problem": problems.tsp(4)}, budget_ms=3000)
    reply = requests.get(stack.url + path, params=params, headers=stack.headers(token), timeout=30)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["error"] and body["errors"][0]["loc"] == ["query", name] and body["errors"][0]["msg"], body


def test_a_receipt_asked_for_right_after_submit_waits_or_is_503(stack: Stack, token: str) -> None:
    """It raised IndexError (a 500) when the job's entries were not written yet."""
    for i in range(10):
        job_id = stack.solve(token, {"problem": problems.tsp(5, seed=i)}, budget_ms=3000).json()["job_id"]
        reply = requests.get(f"{stack.url}/api/v1/audit/jobs/{job_id}/receipt", headers=stack.headers(token),
                             timeout=60)
        assert reply.status_code in (200, 503), reply.text
        if reply.status_code == 503:
            assert reply.headers["Retry-After"]


@pytest.mark.parametrize("suffix", [":problem", ":done", "*", "%0d%0a", "/../x"])
def test_job_ids_that_name_other_keys_are_404(stack: Stack, token: str, suffix: str) -> None:
    job_id = stack.solve(token, {"problem": problems.tsp(4)}, budget_ms=3000).json()["job_id"]
    for path in (f"/api/v1/jobs/{job_id}{suffix}", f"/api/v1/audit/jobs/{job_id}{suffix}"):
        reply = requests.get(stack.url + path, headers=stack.headers(token), timeout=10)
        assert reply.status_code == 404 and reply.json()["error"], (path, reply.text)
