"""HTTP hygiene over real HTTP against gunicorn: headers on every answer, gunicorn's own errors as JSON,
405s that say what is allowed, 413 for oversize chunked bodies, an access log without query strings and
metrics labels that a client cannot multiply."""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import string
import uuid
from typing import Any, Iterator

import pytest
import requests

from tests.integration.stack import Stack, wait_for

MIB = 1024 * 1024
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _raw(stack: Stack, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send ``data`` as it is on a fresh connection; the first answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=30) as sock:
        sock.sendall(data)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.headers, answer.read()


def _assert_json_error(status: int, headers: Any, body: bytes) -> dict[str, Any]:
    assert headers["Content-Type"] == "application/json", (status, headers, body)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers
    payload = json.loads(body)
    assert isinstance(payload["error"], str) and payload["error"]
    return payload


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    """A body of ``total`` bytes that requests sends with Transfer-Encoding: chunked (no Content-Length)."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"a" * piece


# 1. headers ------------------------------------------------------------------------------------------
API_CALLS = [
    ("GET", "/api/v1/jobs/{missing}"),
    ("DELETE", "/api/v1/jobs/{missing}"),
    ("POST", "/api/v1/quantum/solve"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/audit/jobs/{missing}"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/no/such/path"),
]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
def test_api_answers_are_no_store_nosniff_and_bannerless(stack: Stack, token: str, method: str, path: str) -> None:
    for auth in ({"Authorization": f"Bearer {token}"}, {}):  # the answer and the 401 (or 404) alike
        reply = requests.request(method, stack.url + path.format(missing=uuid.uuid4().hex), headers=auth,
                                 json={} if method == "POST" else None, timeout=30)
        assert reply.headers.get("Cache-Control") == "no-store", (reply.status_code, reply.headers)
        assert reply.headers.get("X-Content-Type-Options") == "nosniff"
        assert "Server" not in reply.headers


def test_token_answers_are_no_store_nosniff_and_bannerless(stack: Stack, client: dict[str, Any]) -> None:
    good = requests.post(stack.url + "/oauth/token", data={"grant_type": "client_credentials"},
                         auth=(client["client_id"], client["client_secret"]), timeout=10)
    bad = requests.post(stack.url + "/oauth/token", data={"grant_type": "password"}, timeout=10)
    assert (good.status_code, bad.status_code) == (200, 400)
    for reply in (good, bad):
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert "Server" not in reply.headers


@pytest.mark.parametrize("path", ["/openapi.json", "/.well-known/jwks.json"])
def test_public_documents_may_be_cached_but_are_nosniff(stack: Stack, path: str) -> None:
    reply = requests.get(stack.url + path, timeout=10)
    assert reply.status_code == 200
    assert "Cache-Control" not in reply.headers
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in reply.headers


# 2. gunicorn's own errors ----------------------------------------------------------------------------
MANY_HEADERS = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(200))
GUNICORN_ERRORS = {
    "request line too long": (b"GET /" + b"a" * 10 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414}),
    "too many headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + MANY_HEADERS + b"\r\n", {431, 400}),
    "header too large": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n", {431, 400}),
    "space in a header name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", {400}),
    "garbage request line": (b"garbage\r\n\r\n", {400}),
    "bad HTTP version": (b"GET /healthz HTTP/9.9x\r\nHost: x\r\n\r\n", {400}),
    "bad chunk size": (b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", {400}),
}


@pytest.mark.parametrize("case", list(GUNICORN_ERRORS))
def test_gunicorn_errors_are_json(stack: Stack, case: str) -> None:
    data, statuses = GUNICORN_ERRORS[case]
    status, headers, body = _raw(stack, data)
    assert status in statuses, (status, body)
    _assert_json_error(status, headers, body)
    assert b"<html>" not in body


# 3. 405 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/oauth/token", {"POST", "OPTIONS"}),
    ("PUT", "/api/v1/jobs/some-job", {"GET", "HEAD", "DELETE", "OPTIONS"}),
])
def test_405_says_what_is_allowed(stack: Stack, method: str, path: str, allowed: set[str]) -> None:
    reply = requests.request(method, stack.url + path, timeout=10)
    assert reply.status_code == 405
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == allowed
    assert reply.json() == {"error": "method not allowed"}
    assert reply.headers["Content-Type"] == "application/json"


# 4. oversize chunked bodies --------------------------------------------------------------------------
def test_oversize_chunked_form_is_413(stack: Stack) -> None:
    reply = requests.post(stack.url + "/oauth/token", data=_chunks(20 * MIB),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=120)
    assert reply.status_code == 413, reply.text
    assert reply.json() == {"error": "request body too large"}
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_oversize_chunked_solve_is_413(stack: Stack, token: str) -> None:
    reply = requests.post(stack.url + "/api/v1/quantum/solve", data=_chunks(20 * MIB),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                          timeout=120)
    assert reply.status_code == 413, reply.text
    assert reply.json() == {"error": "request body too large"}


def test_chunked_form_within_the_limit_is_read_whole(stack: Stack, client: dict[str, Any]) -> None:
    body = f"grant_type=client_credentials&scope=ops%3Aread&pad={'x' * MIB}".encode()
    reply = requests.post(stack.url + "/oauth/token", data=iter([body[:1000], body[1000:]]),
                          auth=(client["client_id"], client["client_secret"]),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["scope"] == "ops:read"


# 5. access log ---------------------------------------------------------------------------------------
def _access_entries(stack: Stack) -> list[dict[str, Any]]:
    assert stack.web is not None
    entries = []
    for line in stack.web.log_path.read_text(errors="replace").splitlines():
        if '"gunicorn.access"' in line:
            entries.append(json.loads(line))
    return entries


def test_access_log_is_json_without_query_strings(stack: Stack) -> None:
    path = f"/api/v1/jobs/hygiene-{uuid.uuid4().hex}"
    reply = requests.get(f"{stack.url}{path}?access_token=SECRET123&x=1", timeout=10)
    assert reply.status_code == 401

    def logged() -> list[dict[str, Any]]:
        return [entry for entry in _access_entries(stack) if entry.get("path") == path]

    [entry] = wait_for(logged, 20, "the access log line")
    assert entry["method"] == "GET" and entry["status"] == 401 and entry["ms"] >= 0
    assert stack.web is not None
    assert "SECRET123" not in stack.web.log_path.read_text(errors="replace")


# 6. metrics cardinality ------------------------------------------------------------------------------
def test_unknown_methods_share_one_metrics_label(stack: Stack, token: str) -> None:
    rng = random.Random(7)
    for _ in range(50):
        method = "X" + "".join(rng.choices(string.ascii_uppercase, k=8))
        reply = requests.request(method, stack.url + "/healthz", timeout=10)
        assert reply.status_code in (405, 501), (method, reply.status_code)
    text = requests.get(stack.url + "/metrics", headers=stack.headers(token), timeout=10).text
    methods = set(re.findall(r'^qgate_http_requests_total\{[^}]*method="([^"]*)"', text, re.MULTILINE))
    assert "other" in methods
    assert methods <= KNOWN_METHODS | {"other"}, methods
