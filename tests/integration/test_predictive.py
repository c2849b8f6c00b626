"""Predictive orchestration through a real stack of its own (its breaker cool-down is short, and its lane
figures must not leak into the shared stack's tests): runtime fault drills through ``qgate faults``, a
slow qpu passed over on its figures, a failing qpu's breaker opening and closing after probes, and a
waiting job's queue position falling as the jobs ahead finish."""

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


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("predictive")), QGATE_BREAKER_COOLDOWN_S="3",
                       QGATE_TELEMETRY_STALE_S="600") as running:
        yield running


@pytest.fixture(scope="module")
def own_token(own_stack: Stack) -> str:
    return own_stack.token(own_stack.create_client("acme", SCOPES))


@pytest.fixture(autouse=True)
def fresh_lanes(own_stack: Stack) -> Iterator[None]:
    """Each test starts with no drills, no figures and closed breakers."""
    own_stack.forget_lane_figures()
    yield


def _faults(stack: Stack, *args: str) -> dict[str, Any]:
    done = stack.cli("faults", *args, "--by", "test-operator") if args[0] != "show" else stack.cli("faults", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _async(stack: Stack, token: str, body: dict, budget_ms: int) -> str:
    reply = stack.solve(token, body, budget_ms)
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def _elapsed_ms(job: dict[str, Any]) -> float:
    def ts(value: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    return (ts(job["finished_at"]) - ts(job["created_at"])) * 1000


def test_faults_cli_changes_drills_at_runtime_and_audits_who(own_stack: Stack) -> None:
    shown = _faults(own_stack, "set", "qpu.delay_ms=8000", "qpu.fail_rate=0.3", "qpu.delay_jitter=0.5")
    assert shown["qpu"] == {"source": "runtime", "fail_rate": 0.3, "delay_ms": 8000, "delay_jitter": 0.5,
                            "readout_flip": 0.0}
    assert _faults(own_stack, "show")["sim"]["source"] == "default"
    assert _faults(own_stack, "clear", "qpu")["qpu"]["delay_ms"] == 0
    bad = own_stack.cli("faults", "set", "qpu.delay=1")
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    entries = wait_for(lambda: [e for e in own_stack.audit_entries() if e["type"] == "faults.changed"] or None,
                       20, "faults.changed in the audit log")
    wait_for(lambda: len([e for e in own_stack.audit_entries() if e["type"] == "faults.changed"]) >= 2, 20,
             "both changes audited")
    entries = [e for e in own_stack.audit_entries() if e["type"] == "faults.changed"]
    assert [(e["data"]["action"], e["data"]["by"]) for e in entries] == [("set", "test-operator"),
                                                                         ("clear", "test-operator")]


def test_a_waiting_job_sees_its_queue_position_fall(own_stack: Stack, own_token: str) -> None:
    _faults(own_stack, "set", "qpu.delay_ms=2500")  # longer than four submits take on a loaded machine
    body = {"problem": problems.circuit(), "solver": "qpu"}
    jobs = [_async(own_stack, own_token, body, 30_000) for _ in range(4)]
    last = jobs[-1]
    seen: list[tuple[int, int]] = []
    providers: list[dict[str, Any]] = []

    def started() -> bool:
        view = own_stack.job(own_token, last).json()
        if view.get("queue"):
            queue = view["queue"]
            assert queue["lane"] == "qpu" and queue["predicted_finish_at"] > queue["predicted_start_at"]
            seen.append((queue["position"], queue["ahead"]))
            if "provider" in queue:
                assert "; provider (emulated fake_manila: configured queue delay" in queue["basis"], queue
                providers.append(queue["provider"])
        return view["status"] != "queued"

    wait_for(started, 40, "the last job to start", interval=0.2)
    positions = [p for p, _ in seen]
    assert positions == sorted(positions, reverse=True), positions  # never moves back
    # 3 when first seen on an idle machine (one job runs); 2 if a job finished while the others were submitted
    assert positions[0] >= 2 and positions[-1] == 1 and len(set(positions)) >= 2, positions
    assert all(ahead == position - 1 for position, ahead in seen)
    assert any(p["wait_s"] == 2.5 and p["source"].endswith(" + drill delay 2.5 s") for p in providers), providers
    for job_id in jobs:
        assert own_stack.wait_job(own_token, job_id, 60)["status"] == "succeeded"
    assert "decision" in own_stack.job(own_token, last).json()


def test_a_slow_qpu_is_passed_over_and_jobs_finish_on_the_next_lane_inside_their_budget(
        own_stack: Stack, own_token: str) -> None:
    _faults(own_stack, "set", "qpu.delay_ms=2000")
    body = {"problem": problems.circuit(), "solver": "qpu"}
    for _ in range(3):  # three slow successes: the qpu lane's figures for this class
        job = own_stack.wait_job(own_token, _async(own_stack, own_token, body, 10_000), 60)
        assert job["status"] == "succeeded" and job["solver"]["lane"] == "qpu", job
    for _ in range(3):
        job = own_stack.wait_job(own_token, _async(own_stack, own_token, {"problem": problems.circuit(),
                                                                          "solver": "auto"}, 3000), 30)
        first = job["attempts"][0]
        assert (first["lane"], first["outcome"]) == ("qpu", "skipped"), job["attempts"]
        assert first["reason"].startswith("predicted: qpu queue wait p90 "), first["reason"]
        assert "> share 1.5 s" in first["reason"], first["reason"]
        assert job["status"] == "succeeded" and job["solver"]["lane"] == "sim", job
        assert _elapsed_ms(job) < 1500, job  # well inside the 3 s budget: no half of it spent on qpu
        skip = job["decision"][0]
        assert (skip["lane"], skip["action"]) == ("qpu", "skip") and skip["outlook"]["samples"] >= 3


def test_a_failing_qpu_opens_its_breaker_and_probes_close_it_again(own_stack: Stack, own_token: str) -> None:
    _faults(own_stack, "set", "qpu.fail_rate=1")
    body = {"problem": problems.circuit(), "solver": "qpu"}
    for _ in range(5):
        job = own_stack.wait_job(own_token, _async(own_stack, own_token, body, 6000), 60)
        assert job["attempts"][0]["outcome"] == "failed" and job["status"] == "succeeded", job
    job = own_stack.wait_job(own_token, _async(own_stack, own_token, body, 6000), 60)
    first = job["attempts"][0]
    assert first["outcome"] == "skipped" and first["reason"].startswith("breaker: open since "), first
    assert first["reason"].endswith("(5 attempts in a row failed)") and job["solver"]["lane"] == "sim"
    _faults(own_stack, "clear")
    time.sleep(3.5)  # the cool-down
    lanes = []
    for _ in range(3):  # two probes close it; the third job is planned on a closed breaker
        job = own_stack.wait_job(own_token, _async(own_stack, own_token, body, 6000), 60)
        lanes.append((job["attempts"][0]["lane"], job["attempts"][0]["outcome"]))
    assert lanes == [("qpu", "succeeded")] * 3, lanes
    moves = wait_for(lambda: [(e["data"]["from_state"], e["data"]["to_state"]) for e in own_stack.audit_entries()
                              if e["type"] == "lane.breaker"] or None, 20, "breaker transitions audited")
    wait_for(lambda: len([e for e in own_stack.audit_entries() if e["type"] == "lane.breaker"]) >= 3, 20,
             "every breaker transition audited")
    moves = [(e["data"]["from_state"], e["data"]["to_state"], e["data"]["reason"])
             for e in own_stack.audit_entries() if e["type"] == "lane.breaker"]
    assert [m[:2] for m in moves] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")], moves
    assert moves[0][2] == "5 attempts in a row failed"
    metrics = requests.get(own_stack.url + "/metrics", headers=own_stack.headers(own_token), timeout=10).text
    assert 'qgate_breaker_transitions_total{lane="qpu",to_state="open"} 1.0' in metrics


def test_admission_refuses_what_no_lane_can_finish_and_says_when_to_retry(own_stack: Stack, own_token: str) -> None:
    _faults(own_stack, "set", "heuristic.delay_ms=2500")
    tsp = {"problem": problems.tsp(6), "solver": "heuristic"}
    for _ in range(3):  # three slow answers: the heuristic lane's figures for this class
        job = own_stack.wait_job(own_token, _async(own_stack, own_token, tsp, 10_000), 60)
        assert job["status"] == "succeeded", job
    reply = own_stack.solve(own_token, tsp, 2000)
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert body["errors"][0]["loc"] == ["plan", "heuristic"]
    assert body["errors"][0]["msg"].startswith("predicted: heuristic queue wait p90 ")
    assert 1 <= int(reply.headers["Retry-After"]) <= 300
    assert own_stack.solve(own_token, tsp, 15_000).status_code == 202  # a budget it can meet is accepted


def test_a_lane_queue_full_of_the_tenants_own_jobs_is_429_for_it_and_503_for_others(
        own_stack: Stack, own_token: str) -> None:
    other = own_stack.token(own_stack.create_client("globex", SCOPES))
    _faults(own_stack, "set", "heuristic.delay_ms=2500")
    tsp = {"problem": problems.tsp(6), "solver": "heuristic"}
    for _ in range(3):  # the lane's figures: 2.5 s per answer
        assert own_stack.wait_job(own_token, _async(own_stack, own_token, tsp, 10_000), 60)["status"] == "succeeded"
    backlog = [_async(own_stack, own_token, tsp, 60_000) for _ in range(6)]  # acme's own queue
    mine = own_stack.solve(own_token, tsp, 4000)
    assert mine.status_code == 429, mine.text
    assert mine.json()["error"].startswith("quota: your own queued jobs fill the lanes this job needs")
    assert 1 <= int(mine.headers["Retry-After"]) <= 300
    theirs = own_stack.solve(other, tsp, 4000)
    assert theirs.status_code == 503 and theirs.json()["errors"][0]["loc"] == ["plan", "heuristic"], theirs.text
    for job_id in backlog:
        requests.delete(f"{own_stack.url}/api/v1/jobs/{job_id}", headers=own_stack.headers(own_token), timeout=10)
