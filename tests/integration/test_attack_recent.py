"""The surfaces added last, attacked from outside on the shared stack: what broke is fixed, what held stays held.

Broke (each test fails without its fix): a usage/report time whose UTC value falls outside the calendar
(``9999-12-31T23:59-23:59`` is year 10000 in UTC, and ``to=0001-01-01`` puts the default ``from`` in year 0)
was a 500; a metadata value refused for its type or
length named only ``["body", "metadata"]``, not its key; a portfolio whose budget could start no lane was a 422
with no ``errors`` at all.
Held: seeds, shadow lists, metadata with NUL, odd W3C trace headers (tracing off here; the OTLP-on case was
checked by hand against an unused collector port), X-Forwarded-For and Forwarded without trusted proxies,
repeated query parameters (refused), odd canary limits, Idempotency-Key reuse. And the log verifies after all of it.
"""

from __future__ import annotations

import http.client
import json
import secrets
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.integration import problems
from tests.integration.stack import Stack

TSP = problems.tsp(4)


def _raw(stack: Stack, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> tuple[int, Any]:
    """One request with headers exactly as given (repeats, latin-1 bytes), the answer's status and JSON."""
    url = urlparse(stack.url)
    # a loopback address of its own, so that the failed logins below count against no other test's address
    source = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


# --- broke: times outside the calendar ------------------------------------------------------------------

OUT_OF_CALENDAR = {
    "usage to after year 9999 in UTC": ("/api/v1/usage", {"to": "9999-12-31T23:59:59-23:59"}, "to"),
    "usage from before year 1 in UTC": ("/api/v1/usage", {"from": "0001-01-01T00:00+23:59"}, "from"),
    "usage to in year 1, from a day before it": ("/api/v1/usage", {"to": "0001-01-01"}, "to"),
    "reports since after year 9999 in UTC": ("/api/v1/reports/lanes", {"since": "9999-12-31T23:00-23:59"}, "since"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_CALENDAR))
def test_times_outside_the_calendar_are_400_with_loc(stack: Stack, token: str, case: str) -> None:
    path, params, name = OUT_OF_CALENDAR[case]
    reply = requests.get(stack.url + path, params=params, headers=stack.headers(token), timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["errors"][0]["loc"] == ["query", name]


# --- broke: a metadata value's loc names its key ---------------------------------------------------------

@pytest.mark.parametrize("value", [{"b": 1}, [1], "x" * 1025])
def test_a_refused_metadata_value_is_located_by_its_key(stack: Stack, token: str, value: Any) -> None:
    reply = stack.solve(token, {"problem": TSP, "metadata": {"ok": 1, "lane_id": value}}, budget_ms=1000)
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["loc"] == ["body", "metadata", "lane_id"], reply.text


# --- broke: a portfolio refused at admission said why only in prose -------------------------------------

@pytest.mark.parametrize("budget_ms", [1, 2])
def test_a_portfolio_without_budget_to_start_says_each_lanes_reason_with_loc(stack: Stack, token: str,
                                                                            budget_ms: int) -> None:
    reply = stack.solve(token, {"problem": TSP, "strategy": "portfolio"}, budget_ms=budget_ms)
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("plan", "qpu"), ("plan", "sim"), ("plan", "heuristic")}, errors
    assert all(e["msg"] for e in errors)


# --- held: the solve body's newer fields ---------------------------------------------------------------

ENVELOPE_422 = {
    "seed a boolean": ({"seed": True}, ["body", "seed"]),
    "seed a float": ({"seed": 1.0}, ["body", "seed"]),
    "seed a string": ({"seed": "7"}, ["body", "seed"]),
    "seed 2**32": ({"seed": 2**32}, ["body", "seed"]),
    "seed 2**64": ({"seed": 2**64}, ["body", "seed"]),
    "shadow a string": ({"shadow": "qpu"}, ["body", "shadow"]),
    "shadow an object": ({"shadow": {"qpu": 1}}, ["body", "shadow"]),
    "shadow a null lane": ({"shadow": [None]}, ["body", "shadow", 0]),
    "shadow four lanes": ({"shadow": ["qpu", "sim", "heuristic", "qpu"]}, ["body", "shadow"]),
    "strategy a list": ({"strategy": ["portfolio"]}, ["body", "strategy"]),
    "metadata a list": ({"metadata": [1]}, ["body", "metadata"]),
    "metadata key empty": ({"metadata": {"": 1}}, ["body", "metadata", ""]),
    "metadata 33 keys": ({"metadata": {str(i): i for i in range(33)}}, ["body", "metadata"]),
}


@pytest.mark.parametrize("case", sorted(ENVELOPE_422))
def test_odd_envelope_values_are_422_with_loc(stack: Stack, token: str, case: str) -> None:
    fields, loc = ENVELOPE_422[case]
    reply = stack.solve(token, {"problem": TSP, **fields}, budget_ms=1000)
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["loc"][:len(loc)] == loc, reply.text


@pytest.mark.parametrize("fields", [
    {"strategy": "portfolio", "shadow": ["qpu", "sim", "heuristic"]},
    {"solver": "heuristic", "shadow": ["heuristic"]},
    {"shadow": []},
    {"metadata": {"a\u0000b": "x\u0000y", "business_unit": "\u202e\U0010ffff", "n": 1e-05, "big": 1e300}},
], ids=["portfolio+every-shadow", "shadow-of-the-served-lane", "no-shadow", "metadata-nul-bidi-exponents"])
def test_odd_but_valid_envelopes_are_served(stack: Stack, token: str, fields: dict[str, Any]) -> None:
    reply = stack.solve(token, {"problem": TSP, **fields}, budget_ms=1000)
    assert reply.status_code == 200 and reply.json()["status"] == "succeeded", reply.text


def test_idempotency_key_reuse_with_another_body_or_tenant(stack: Stack, token: str) -> None:
    key = "k-\u00e9\u00e9".encode().decode("latin-1")  # a key of non-ASCII bytes, as HTTP carries them
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
               ("X-Latency-Budget-Ms", "1000"), ("Idempotency-Key", key)]
    first = _raw(stack, "POST", "/api/v1/quantum/solve", headers, json.dumps({"problem": TSP, "seed": 1}).encode())
    again = _raw(stack, "POST", "/api/v1/quantum/solve", headers, json.dumps({"problem": TSP, "seed": 1}).encode())
    other = _raw(stack, "POST", "/api/v1/quantum/solve", headers, json.dumps({"problem": TSP, "seed": 2}).encode())
    assert first[0] == again[0] == 200 and first[1]["job_id"] == again[1]["job_id"]
    assert other[0] == 409 and other[1]["error"]


# --- held: headers ---------------------------------------------------------------------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = {
    "traceparent garbage": [("traceparent", "zz")],
    "traceparent version ff": [("traceparent", "ff" + TRACEPARENT[2:])],
    "traceparent zero ids": [("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01")],
    "traceparent twice": [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT.replace("0a", "1a"))],
    "traceparent latin-1": [("traceparent", TRACEPARENT[:-3] + "\u00e9".encode().decode("latin-1"))],
    "tracestate 1000 members": [("traceparent", TRACEPARENT), ("tracestate", ",".join(f"k{i}=v" for i in range(1000)))],
    "baggage 1000 entries": [("baggage", ",".join(f"k{i}=v" for i in range(1000)))],
    "baggage bad escapes": [("baggage", "k=%zz%%%;p=%ff")],
    "baggage in 50 lines": [("baggage", ",".join(f"k{i}=v" for i in range(100)))] * 50,
    "x-forwarded-for garbage": [("X-Forwarded-For", "not-an-ip, ::ffff:zz, [::1]:80, fe80::1%eth0")],
    "x-forwarded-for 1000 hops": [("X-Forwarded-For", ",".join(["1.2.3.4"] * 1000))],
    "forwarded garbage": [("Forwarded", 'for="[::1;by=;;,,=')],
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_odd_trace_and_forwarding_headers_never_fail_a_request(stack: Stack, token: str, case: str) -> None:
    body = json.dumps({"problem": TSP}).encode()
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
               ("X-Latency-Budget-Ms", "1000"), *HEADERS[case]]
    status, answer = _raw(stack, "POST", "/api/v1/quantum/solve", headers, body)
    assert status == 200 and answer["status"] == "succeeded", (status, answer)
    login = f"grant_type=client_credentials&client_id=nobody-{secrets.token_hex(4)}&client_secret=x".encode()
    status, answer = _raw(stack, "POST", "/oauth/token", [("Content-Type", "application/x-www-form-urlencoded"),
                                                          *HEADERS[case]], login)
    assert status == 401 and answer["error"], (status, answer)


@pytest.mark.parametrize("name", ["baggage", "tracestate", "X-Forwarded-For"])
def test_a_64_kb_header_is_a_json_431(stack: Stack, token: str, name: str) -> None:
    status, answer = _raw(stack, "GET", "/api/v1/usage/limits",
                          [("Authorization", f"Bearer {token}"), (name, "k=" + "v" * 65_536)])
    assert status == 431 and answer["error"], (status, answer)


# --- held: query strings of the report routes ---------------------------------------------------------

def test_a_repeated_tenant_parameter_is_refused_on_the_real_ingress(stack: Stack) -> None:
    """Parameter pollution: neither order of two ``tenant`` values is read (first-wins was safe, but the
    caller meant something no answer would say); 400 with ``loc`` through gunicorn, whoever asks."""
    other = stack.token(stack.create_client("globex", "quantum:solve solver:heuristic"))
    for path in ("/api/v1/usage/limits", "/api/v1/reports/lanes", "/api/v1/usage"):
        for query in ("tenant=globex&tenant=acme", "tenant=acme&tenant=globex"):
            reply = requests.get(f"{stack.url}{path}?{query}", headers=stack.headers(other), timeout=30)
            assert reply.status_code == 400, reply.text
            assert reply.json()["errors"] == [{"loc": ["query", "tenant"],
                                               "msg": "query parameter 'tenant' given more than once"}]


@pytest.mark.parametrize("limit", ["NaN", "\uff11\uff12", "1e3", "0", "-1", "1441", "9" * 400])
def test_odd_canary_limits_are_400_with_loc(stack: Stack, token: str, limit: str) -> None:
    reply = requests.get(stack.url + "/api/v1/ops/lanes/qpu/canary", params={"limit": limit},
                         headers=stack.headers(token), timeout=30)
    assert reply.status_code == 400 and reply.json()["errors"][0]["loc"] == ["query", "limit"], reply.text


def test_the_audit_log_verifies_after_every_case_above(stack: Stack, token: str) -> None:
    done = stack.cli("audit", "verify")
    assert done.returncode == 0, done.stderr[-500:]
    assert all(proc.alive() for proc in [stack.web, *stack.workers.values(), stack.audit] if proc is not None)
