"""The calibration canary through a real stack of its own (a canary every second, a short cool-down):
the watchdog sends it, the qpu worker runs GHZ on the emulated device, a drifted readout (``qgate faults
set qpu.readout_flip=…``) opens the breaker with the figure, jobs pass the lane over, and once the drill
is cleared the readings recover and a probe closes the breaker again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.integration import problems
from tests.integration.stack import Stack, running_stack, wait_for

SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic ops:read"
MIN_FIDELITY = 0.75


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("canary")), QGATE_CANARY_SECONDS="1",
                       QGATE_CANARY_MIN_FIDELITY=str(MIN_FIDELITY), QGATE_CANARY_SHOTS="400",
                       QGATE_BREAKER_COOLDOWN_S="5", QGATE_BREAKER_PROBES="1") as running:
        yield running


@pytest.fixture(scope="module")
def own_token(own_stack: Stack) -> str:
    return own_stack.token(own_stack.create_client("acme", SCOPES))


def _canary(stack: Stack, token: str, **params: str) -> dict[str, Any]:
    reply = requests.get(stack.url + "/api/v1/ops/lanes/qpu/canary", params=params, headers=stack.headers(token),
                         timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _faults(stack: Stack, *args: str) -> None:
    done = stack.cli("faults", *args, "--by", "canary-test")
    assert done.returncode == 0, done.stderr


def _readings_since(stack: Stack, token: str, since: float) -> list[dict[str, Any]]:
    return [r for r in _canary(stack, token, limit="20")["readings"] if r["at"] > since and "fidelity" in r]


def test_a_drifted_device_opens_the_breaker_with_the_figure_and_recovers(own_stack: Stack, own_token: str) -> None:
    steady = wait_for(lambda: _readings_since(own_stack, own_token, 0) or None, 60, "a first canary reading")
    assert steady[0]["fidelity"] > MIN_FIDELITY and steady[0]["backend"] == "fake_manila", steady[0]
    assert _canary(own_stack, own_token)["breaker"]["state"] == "closed"

    drifted_at = time.time()
    _faults(own_stack, "set", "qpu.readout_flip=0.25")
    opened = wait_for(lambda: (lambda c: c if c["breaker"]["state"] == "open" else None)(
        _canary(own_stack, own_token)), 30, "the canary to open the qpu breaker")
    reason = opened["breaker"]["reason"]
    assert reason.startswith("canary fidelity 0.") and reason.endswith(f" < {MIN_FIDELITY:.2f} on fake_manila"), reason
    low = [r for r in _readings_since(own_stack, own_token, drifted_at) if r["fidelity"] < MIN_FIDELITY]
    assert low and float(reason.split()[2]) == pytest.approx(low[-1]["fidelity"], abs=0.01)

    reply = own_stack.solve(own_token, {"problem": problems.circuit()}, budget_ms=20000)
    job = own_stack.wait_job(own_token, reply.json()["job_id"], 60)
    skipped = job["attempts"][0]
    assert skipped["lane"] == "qpu" and skipped["outcome"] == "skipped", job["attempts"]
    assert skipped["reason"].startswith("breaker: open since ") and "(canary fidelity 0." in skipped["reason"]
    assert job["status"] == "succeeded" and job["solver"]["lane"] == "sim", job

    metrics = requests.get(own_stack.url + "/metrics", headers=own_stack.headers(own_token), timeout=10).text
    assert 'qgate_breaker_state{lane="qpu"} 2.0' in metrics
    fidelity_line = [line for line in metrics.splitlines() if line.startswith('qgate_canary_fidelity{lane="qpu"}')]
    assert fidelity_line and float(fidelity_line[0].split()[-1]) < 1.0

    cleared_at = time.time()
    _faults(own_stack, "clear", "qpu")
    wait_for(lambda: [r for r in _readings_since(own_stack, own_token, cleared_at + 0.5)
                      if r["fidelity"] > MIN_FIDELITY] or None, 30, "a recovered canary reading")
    body = {"problem": problems.circuit(), "solver": "qpu"}

    def probe_closes() -> bool | None:
        own_stack.wait_job(own_token, own_stack.solve(own_token, body, budget_ms=20000).json()["job_id"], 60)
        return _canary(own_stack, own_token)["breaker"]["state"] == "closed" or None

    wait_for(probe_closes, 60, "a probe to close the breaker after the cool-down", interval=1.0)

    def transitions() -> list[tuple[str, str, str]]:
        return [(e["data"]["from_state"], e["data"]["to_state"], e["data"]["reason"])
                for e in own_stack.audit_entries() if e["type"] == "lane.breaker"]

    wait_for(lambda: len(transitions()) >= 3 or None, 20, "the breaker's transitions in the audit log")
    moves = transitions()
    assert moves[0][:2] == ("closed", "open") and moves[0][2].startswith("canary fidelity"), moves
    assert moves[-1][:2] == ("half_open", "closed"), moves
    canaries = [e for e in own_stack.audit_entries() if e["type"] == "lane.canary"]
    assert canaries and all(e["data"]["min_fidelity"] == MIN_FIDELITY for e in canaries)


def test_the_canary_endpoint_is_for_operators_and_checks_its_arguments(own_stack: Stack, own_token: str) -> None:
    plain = own_stack.token(own_stack.create_client("acme", "quantum:solve"))
    reply = requests.get(own_stack.url + "/api/v1/ops/lanes/qpu/canary", headers=own_stack.headers(plain), timeout=10)
    assert reply.status_code == 403
    for limit in ("0", "99999", "x", "\u0661"):
        reply = requests.get(own_stack.url + "/api/v1/ops/lanes/qpu/canary", params={"limit": limit},
                             headers=own_stack.headers(own_token), timeout=10)
        assert reply.status_code == 400 and reply.json()["errors"][0]["loc"] == ["query", "limit"], reply.text
    reply = requests.get(own_stack.url + "/api/v1/ops/lanes/oracle/canary", headers=own_stack.headers(own_token),
                         timeout=10)
    assert reply.status_code == 404 and reply.json()["error"]
    assert _canary(own_stack, own_token, limit="1")["enabled"] is True
    assert len(_canary(own_stack, own_token, limit="1")["readings"]) <= 1
    assert json.dumps(_canary(own_stack, own_token, limit="3"))
