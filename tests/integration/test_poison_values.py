"""Poison values through the real stack: each is refused at the door with its location, or carried
safely; none stops the audit worker, and the log verifies after all of them."""

from __future__ import annotations

import json

import pytest
import requests

from audit.channel import DEAD_LETTERS, STREAM
from tests.integration import problems
from tests.integration.stack import Stack, wait_for

SOLVE = "/api/v1/quantum/solve"
TSP = '{"kind": "tsp", "locations": [[0,0],[3,4],[6,0]]}'

# Raw bodies, so that what Python's json would never produce (NaN, 1e400, lone surrogates) reaches the API.
REFUSED_422 = {
    "metadata integer beyond 2**53": ('{"problem": %s, "metadata": {"n": 9007199254740993}}' % TSP,
                                      ["body", "metadata", "n"]),
    "NaN literal": ('{"problem": %s, "metadata": {"n": NaN}}' % TSP, ["body", "metadata", "n"]),
    "Infinity literal": ('{"problem": %s, "seed": Infinity}' % TSP, ["body", "seed"]),
    "-Infinity in a matrix": ('{"problem": {"kind": "tsp", "distances": [[0, -Infinity], [1, 0]]}}',
                              ["body", "problem", "distances", 0, 1]),
    "1e400 coordinate": ('{"problem": {"kind": "tsp", "locations": [[0, 0], [1e400, 0]]}}',
                         ["body", "problem", "locations", 1, 0]),
    "lone surrogate in metadata": ('{"problem": %s, "metadata": {"k": "\\ud800"}}' % TSP,
                                   ["body", "metadata", "k"]),
    "lone surrogate as a key": ('{"problem": %s, "metadata": {"\\udc00": 1}}' % TSP,
                                ["body", "metadata", "\\udc00"]),
    "vehicle_capacity 2**64": ('{"problem": {"kind": "cvrp", "locations": [[0,0],[1,1]], "demands": [0, 1], '
                               '"vehicle_capacity": 18446744073709551616, "num_vehicles": 1}}',
                               ["body", "problem", "vehicle_capacity"]),
    "seed beyond 2**53": ('{"problem": %s, "seed": -9007199254740993}' % TSP, ["body", "seed"]),
    "coordinates whose distances overflow": ('{"problem": {"kind": "tsp", "locations": '
                                             '[[0, 0], [1e308, 0], [-1e308, 0]]}}', ["body", "problem"]),
    "distances whose tour overflows": ('{"problem": {"kind": "tsp", "distances": '
                                       '[[0, 1e308, 1e308], [1e308, 0, 1e308], [1e308, 1e308, 0]]}}', ["body", "problem"]),
    "qubo whose energy overflows": ('{"problem": {"kind": "qubo", "n": 2, "terms": [[0, 0, -1e308], [1, 1, -1e308]]}}',
                                    ["body", "problem"]),
    "metadata list": ('{"problem": %s, "metadata": {"k": [1, 2]}}' % TSP, ["body", "metadata"]),
    "metadata text of 8 MB": ('{"problem": %s, "metadata": {"k": "%s"}}' % (TSP, "x" * 100_000), ["body", "metadata"]),
}


def _post_raw(stack: Stack, token: str, body: str | bytes, budget_ms: int = 800) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(stack.url + SOLVE, data=data, timeout=60,
                         headers=stack.headers(token, budget_ms, **{"Content-Type": "application/json"}))


@pytest.mark.parametrize("case", list(REFUSED_422))
def test_values_the_log_cannot_hold_are_422_with_loc(stack: Stack, token: str, case: str) -> None:
    body, loc = REFUSED_422[case]
    reply = _post_raw(stack, token, body)
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert errors[0]["loc"][:len(loc)] == loc, errors


@pytest.mark.parametrize("body", ["[" * 10_000 + "]" * 10_000, '{"problem": ' * 5000 + "1" + "}" * 5000])
def test_deep_nesting_is_a_4xx(stack: Stack, token: str, body: str) -> None:
    reply = _post_raw(stack, token, body)
    assert reply.status_code in (400, 422) and reply.json()["error"], reply.text


def test_whole_floats_beyond_2_53_are_carried_and_verify(stack: Stack, token: str) -> None:
    body = '{"problem": %s, "metadata": {"x": 1e17, "y": -1e20, "z": 123456789.0}}' % TSP
    reply = _post_raw(stack, token, body, budget_ms=20_000)
    assert reply.status_code == 202, reply.text
    job = stack.wait_job(token, reply.json()["job_id"])
    assert job["request"]["metadata"] == {"x": 1e17, "y": -1e20, "z": 123456789.0}
    stack.wait_audited(job["job_id"], "job.succeeded")
    assert stack.cli("audit", "verify").returncode == 0


def test_results_are_finite_json(stack: Stack, token: str) -> None:
    """Large but representable coordinates give a finite cost, written as strict JSON."""
    body = '{"problem": {"kind": "tsp", "locations": [[0, 0], [1e290, 0], [0, 1e290]]}}'
    reply = _post_raw(stack, token, body, budget_ms=20_000)
    assert reply.status_code in (202, 422), reply.text
    if reply.status_code == 202:
        stack.wait_job(token, reply.json()["job_id"])
        reply = stack.job(token, reply.json()["job_id"])
    json.loads(reply.text, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))


def test_poison_in_the_event_stream_is_quarantined_and_the_writer_goes_on(stack: Stack, token: str) -> None:
    """Whatever reaches the stream by another path (a bug, a hand-written XADD) cannot stop the writer."""
    client = stack.redis()
    poison = '{"type":"x","ts":1.0,"job_id":null,"tenant":"acme","data":{"v":NaN,"s":"\\ud800"}}'
    stream_id = client.xadd(STREAM, {"event": poison})
    reply = stack.solve(token, {"problem": problems.tsp(5)}, budget_ms=20_000)
    assert reply.status_code == 202, reply.text
    stack.wait_job(token, reply.json()["job_id"])
    stack.wait_audited(reply.json()["job_id"], "job.succeeded")
    quarantined = [e for e in stack.audit_entries() if e["type"] == "audit.quarantined"]
    assert any(e["data"]["stream_id"] == stream_id for e in quarantined)
    assert any(fields["qgate_stream_id"] == stream_id for _, fields in client.xrange(DEAD_LETTERS))
    assert stack.audit is not None and stack.audit.alive()
    done = stack.cli("audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    verify = requests.get(stack.url + "/api/v1/audit/verify", headers=stack.headers(token), timeout=30)
    assert verify.status_code == 200 and verify.json()["valid"] is True


def test_the_audit_worker_survived_every_case_above(stack: Stack, token: str) -> None:
    reply = stack.solve(token, {"problem": problems.tsp(4)}, budget_ms=20_000)
    assert reply.status_code == 202
    wait_for(lambda: any(e.get("job_id") == reply.json()["job_id"] for e in stack.audit_entries()), 20,
             "the audit worker to write")
    assert stack.audit is not None and stack.audit.alive()
