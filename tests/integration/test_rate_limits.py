"""Rate limits over real HTTP: gunicorn, Redis and a heuristic worker, with small per-tenant limits from a
QGATE_RATE_LIMITS_FILE so that the windows fill in a few requests.

The stack here is this module's own (no qpu or sim worker, no audit writer): its limits must not leak
into the session stack's tests, and Redis is stopped at the end.
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.integration.stack import Stack, loopback_session

SCOPES = "quantum:solve solver:heuristic"
EDGE_LIMIT, EDGE_WINDOW_S = 5, 10
OVERRIDES = {"tenants": {
    "rl-edge": {"solve_per_tenant": f"{EDGE_LIMIT} per {EDGE_WINDOW_S} seconds",
                "solve_per_client": f"{EDGE_LIMIT} per {EDGE_WINDOW_S} seconds"},
    "rl-iso-a": {"read_per_tenant": "3/minute"},
    "rl-iso-b": {"read_per_tenant": "3/minute"},
    "rl-clients": {"solve_per_client": "2/minute", "solve_per_tenant": "3/minute"},
    "rl-headers": {"solve_per_tenant": "4/minute", "read_per_client": "7/minute"},
    "rl-down": {},
}}
SMALL = {"problem": {"kind": "tsp", "locations": [[0, 0], [3, 4], [6, 0], [3, -4]]}}
ASYNC_BUDGET_MS = 60_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = Path(tmp_path_factory.mktemp("ratelimit"))
    (base / "limits.json").write_text(json.dumps(OVERRIDES))
    stack = Stack(base, QGATE_RATE_LIMITS_FILE=str(base / "limits.json"))
    try:
        stack.start_redis()
        stack.start_worker("heuristic")
        stack.start_web()
        yield stack
    finally:
        stack.stop()


def token_of(stack: Stack, tenant: str) -> str:
    return stack.token(stack.create_client(tenant, SCOPES))


def submit(stack: Stack, token: str) -> requests.Response:
    return stack.solve(token, SMALL, ASYNC_BUDGET_MS)


def read(stack: Stack, token: str) -> requests.Response:
    return stack.job(token, secrets.token_hex(16))  # an unknown job: 404 once the limits let it through


def assert_refused(reply: requests.Response, limit: int, window_s: int) -> None:
    assert reply.status_code == 429, (reply.status_code, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json") and reply.json()["error"]
    assert 1 <= int(reply.headers["Retry-After"]) <= window_s
    assert reply.headers["RateLimit-Limit"] == str(limit) and reply.headers["RateLimit-Remaining"] == "0"
    assert 0 <= int(reply.headers["RateLimit-Reset"]) <= window_s
    assert f"{limit};w={window_s}" in reply.headers["RateLimit-Policy"]


def burst(stack: Stack, token: str, count: int) -> list[requests.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: submit(stack, token), range(count)))


def test_a_burst_straddling_a_window_edge_never_passes_more_than_the_limit(limited: Stack) -> None:
    """One submit at a clock edge, LIMIT - 1 just before the next edge and LIMIT just after it. A fixed
    window (aligned to the clock, or started by the first request) admits 2 * LIMIT - 1 within ~1 s here."""
    token = token_of(limited, "rl-edge")
    t0 = (time.time() // EDGE_WINDOW_S + 1) * EDGE_WINDOW_S
    time.sleep(t0 + 0.2 - time.time())
    first = submit(limited, token)
    assert first.status_code == 202, first.text
    time.sleep(t0 + EDGE_WINDOW_S - 0.8 - time.time())
    before = burst(limited, token, EDGE_LIMIT - 1)
    time.sleep(max(0.0, t0 + EDGE_WINDOW_S + 0.4 - time.time()))
    after = burst(limited, token, EDGE_LIMIT)
    straddle_ended = time.time()
    assert [r.status_code for r in before] == [202] * (EDGE_LIMIT - 1), [r.text for r in before]
    assert straddle_ended - (t0 + EDGE_WINDOW_S - 0.8) < EDGE_WINDOW_S  # both bursts inside one window
    passed = [r for r in before + after if r.status_code == 202]
    assert len(passed) <= EDGE_LIMIT, f"{len(passed)} submits passed within one {EDGE_WINDOW_S}s window"
    for reply in after:
        if reply.status_code != 202:
            assert_refused(reply, EDGE_LIMIT, EDGE_WINDOW_S)


def test_one_tenant_exhausting_its_limit_does_not_limit_another(limited: Stack) -> None:
    token_a, token_b = token_of(limited, "rl-iso-a"), token_of(limited, "rl-iso-b")
    assert [read(limited, token_a).status_code for _ in range(3)] == [404] * 3
    assert_refused(read(limited, token_a), 3, 60)
    assert [read(limited, token_b).status_code for _ in range(3)] == [404] * 3
    assert_refused(read(limited, token_a), 3, 60)


def test_a_client_is_limited_alone_and_its_tenant_across_its_clients(limited: Stack) -> None:
    runaway, other = token_of(limited, "rl-clients"), token_of(limited, "rl-clients")
    assert [submit(limited, runaway).status_code for _ in range(2)] == [202, 202]
    assert_refused(submit(limited, runaway), 2, 60)  # its own limit: the tenant has one left
    assert submit(limited, other).status_code == 202
    assert_refused(submit(limited, other), 3, 60)  # now the tenant's


def test_admitted_answers_carry_the_ratelimit_headers(limited: Stack) -> None:
    token = token_of(limited, "rl-headers")
    remaining, job_ids = [], []
    for _ in range(4):
        reply = submit(limited, token)
        assert reply.status_code == 202, reply.text
        job_ids.append(reply.json()["job_id"])
        assert reply.headers["RateLimit-Limit"] == "4"
        assert reply.headers["RateLimit-Policy"] == "300;w=60, 4;w=60"
        assert 0 <= int(reply.headers["RateLimit-Reset"]) <= 60 and "Retry-After" not in reply.headers
        remaining.append(int(reply.headers["RateLimit-Remaining"]))
    assert remaining == [3, 2, 1, 0]
    assert_refused(submit(limited, token), 4, 60)
    job = limited.job(token, job_ids[0])
    assert job.status_code == 200 and job.headers["RateLimit-Limit"] == "7"  # reads spend the read limits
    assert job.headers["RateLimit-Remaining"] == "6"
    assert read(limited, token).headers["RateLimit-Remaining"] == "5"  # errors carry them too (404 here)


def test_a_throttled_login_carries_the_ratelimit_headers(limited: Stack) -> None:
    session = loopback_session()
    for _ in range(10):
        reply = session.post(limited.url + "/oauth/token", data={"grant_type": "client_credentials"},
                             auth=("qc_" + secrets.token_hex(12), "wrong"), timeout=30)
        assert reply.status_code == 401
    client_id = "qc_" + secrets.token_hex(12)
    for _ in range(10):
        session.post(limited.url + "/oauth/token", data={"grant_type": "client_credentials"},
                     auth=(client_id, "wrong"), timeout=30)
    assert_refused(session.post(limited.url + "/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(client_id, "wrong"), timeout=30), 10, 60)


def test_without_redis_the_limiter_fails_closed_with_a_json_503(limited: Stack) -> None:
    token = token_of(limited, "rl-down")
    assert read(limited, token).status_code == 404
    limited.stop_redis()
    try:
        for reply in (read(limited, token), submit(limited, token)):
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"] and int(reply.headers["Retry-After"]) >= 1
    finally:
        limited.start_redis()
    assert read(limited, token).status_code == 404
