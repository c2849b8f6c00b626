"""End to end through HTTP, Redis and real Celery workers: each lane, fallbacks, timeouts, a killed
worker, a stopped audit worker, and the audit chain checked afterwards."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests

from tests.integration import problems
from tests.integration.stack import BIN, ROOT, Stack, wait_for


def _finished(stack: Stack, token: str, body: dict, budget_ms: int = 20_000) -> dict:
    reply = stack.solve(token, body, budget_ms)
    assert reply.status_code == 202, reply.text
    assert reply.headers["Location"] == reply.json()["track_url"]
    return stack.wait_job(token, reply.json()["job_id"])


def test_sync_fast_path_answers_a_tsp_in_the_response(stack: Stack, token: str) -> None:
    problem = problems.tsp(12)
    reply = stack.solve(token, {"problem": problem, "seed": 5}, budget_ms=1000)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "succeeded" and job["kind"] == "tsp"
    tour = job["result"]["tour"]
    assert tour[0] == 0 and sorted(tour) == list(range(12))
    assert job["result"]["cost"] == pytest.approx(problems.tour_cost(problem["locations"], tour))
    assert job["solver"]["lane"] == "heuristic" and job["solver"]["id"] and job["solver"]["version"]
    assert job["provenance"]["fingerprint"].startswith("sha256:") and job["provenance"]["seed"] == 5
    assert [p["action"] for p in job["plan"]] == ["skip", "skip", "try"]
    assert job["plan"][0]["reason"]  # why qpu could not take a tsp
    assert [(a["lane"], a["outcome"]) for a in job["attempts"]] == [
        ("qpu", "skipped"), ("sim", "skipped"), ("heuristic", "succeeded")]
    assert job["attempts"][1]["reason"] == "capacity: 121 qubits > 20"


def test_async_cvrp_and_assignment_on_the_heuristic_lane(stack: Stack, token: str) -> None:
    cvrp = _finished(stack, token, {"problem": problems.cvrp(), "solver": "heuristic"}, budget_ms=3000)
    assert cvrp["status"] == "succeeded", cvrp
    routes = cvrp["result"]["routes"]
    assert sorted(c for r in routes for c in r) == list(range(1, 15)) and cvrp["result"]["feasible"]
    assignment = _finished(stack, token, {"problem": problems.assignment()}, budget_ms=3000)
    assert assignment["status"] == "succeeded", assignment
    assert assignment["result"]["assignment"] == [1, 1, 2, 0] and assignment["result"]["cost"] == 4


def test_sim_lane_runs_a_bell_circuit(stack: Stack, token: str) -> None:
    job = _finished(stack, token, {"problem": problems.circuit(), "solver": "sim", "seed": 11})
    assert job["status"] == "succeeded", job
    counts = job["result"]["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 500
    assert job["solver"]["lane"] == "sim"


def test_qpu_lane_runs_on_the_emulated_device_with_its_calibration(stack: Stack, token: str) -> None:
    job = _finished(stack, token, {"problem": problems.circuit(problems.GHZ3, 1000), "solver": "qpu",
                                   "seed": 3})
    assert job["status"] == "succeeded", job
    assert job["solver"]["lane"] == "qpu"
    counts = job["result"]["counts"]
    assert sum(counts.values()) == 1000
    assert counts.get("000", 0) + counts.get("111", 0) > 700  # GHZ, with device noise
    calibration = job["provenance"]["calibration"]
    assert calibration["sha256"] and calibration["backend"]
    assert stack.redis().exists(f"qgate:calibration:{calibration['sha256']}")


def test_over_capacity_problem_sent_to_sim_falls_back_to_heuristic(stack: Stack, token: str) -> None:
    qubo = {"kind": "qubo", "n": 25, "terms": [[i, i + 1, -1.0] for i in range(24)] + [[3, 3, 2.0]]}
    reply = stack.solve(token, {"problem": qubo, "solver": "sim", "seed": 2}, budget_ms=1000)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert [(a["lane"], a["outcome"]) for a in job["attempts"]] == [("sim", "skipped"), ("heuristic", "succeeded")]
    assert job["attempts"][0]["reason"] == "capacity: 25 qubits > 20"
    assert job["solver"]["lane"] == "heuristic" and job["result"]["energy"] == -22.0


def test_forced_qpu_failure_falls_back_to_sim_with_both_attempts_recorded(stack: Stack, token: str) -> None:
    with stack.worker_env("qpu", QGATE_FAULTS="qpu.fail_rate=1.0"):
        job = _finished(stack, token, {"problem": problems.circuit(), "solver": "qpu"})
    assert job["status"] == "succeeded", job
    assert [(a["lane"], a["outcome"]) for a in job["attempts"]] == [("qpu", "failed"), ("sim", "succeeded")]
    assert "injected fault" in job["attempts"][0]["reason"]
    types = [e["type"] for e in stack.wait_audited(job["job_id"], "job.succeeded")]
    assert types.index("attempt.failed") < types.index("job.fallback") < types.index("job.succeeded")


def test_qpu_provider_failures_and_queue_delays_map_to_attempt_outcomes(stack: Stack, token: str) -> None:
    body = {"problem": problems.circuit(), "solver": "qpu"}
    with stack.worker_env("qpu", QGATE_QPU_FAILURE_RATE="1.0"):
        failed = _finished(stack, token, body, budget_ms=6000)
    assert failed["status"] == "succeeded" and failed["solver"]["lane"] == "sim"
    assert failed["attempts"][0]["outcome"] == "failed" and "QpuError" in failed["attempts"][0]["reason"]
    with stack.worker_env("qpu", QGATE_QPU_QUEUE_DELAY_MS="30000"):  # 8 s: sim keeps ~4 s on a loaded machine
        delayed = _finished(stack, token, body, budget_ms=8000)
    assert delayed["status"] == "succeeded" and delayed["solver"]["lane"] == "sim"
    assert delayed["attempts"][0]["outcome"] == "timeout", delayed["attempts"]


def test_time_limit_records_timeout_and_falls_back(stack: Stack, token: str) -> None:
    with stack.worker_env("qpu", QGATE_FAULTS="qpu.delay_ms=30000"):
        started = time.monotonic()
        job = _finished(stack, token, {"problem": problems.circuit(), "solver": "qpu"}, budget_ms=4000)
        elapsed = time.monotonic() - started
    assert job["status"] == "succeeded", job
    first, second = job["attempts"]
    assert (first["lane"], first["outcome"]) == ("qpu", "timeout")
    assert re.fullmatch(r"time limit of (19\d\d|2000) ms reached", first["reason"]), first["reason"]
    assert (second["lane"], second["outcome"]) == ("sim", "succeeded")
    assert elapsed < 8, "the qpu delay of 30 s must be cut by the attempt's time limit"


def test_killed_lane_worker_job_still_reaches_a_terminal_state(stack: Stack, token: str) -> None:
    """SIGKILL the qpu worker (main process and pool) mid-task: the attempt's lease expires, the
    watchdog records a timeout, and the job falls back to sim."""
    with stack.worker_env("qpu", QGATE_FAULTS="qpu.delay_ms=30000"):
        reply = stack.solve(token, {"problem": problems.circuit(), "solver": "qpu"}, budget_ms=6000)
        job_id = reply.json()["job_id"]
        wait_for(lambda: stack.job(token, job_id).json()["status"] == "running", 10, "attempt to start")
        stack.kill_worker("qpu")
        job = stack.wait_job(token, job_id, timeout=30)
    assert job["status"] == "succeeded", job
    first = job["attempts"][0]
    assert (first["lane"], first["outcome"]) == ("qpu", "timeout") and "lease expired" in first["reason"]
    assert job["attempts"][-1]["lane"] == "sim"


def test_audit_worker_down_loses_no_event(stack: Stack, token: str) -> None:
    stack.stop_audit()
    try:
        replies = [stack.solve(token, {"problem": problems.tsp(8, seed=i)}, budget_ms=3000) for i in range(5)]
        job_ids = [r.json()["job_id"] for r in replies]
        for job_id in job_ids:
            assert stack.wait_job(token, job_id)["status"] == "succeeded"
        written = {e.get("job_id") for e in stack.audit_entries()}
        assert not written & set(job_ids), "nothing can be written while the audit worker is down"
    finally:
        stack.start_audit()
    for job_id in job_ids:
        types = [e["type"] for e in stack.wait_audited(job_id, "job.succeeded")]
        assert types == ["job.accepted", "attempt.skipped", "attempt.skipped", "attempt.enqueued",
                         "attempt.started", "attempt.succeeded", "job.succeeded"]


def test_cancel_an_unfinished_job(stack: Stack, token: str) -> None:
    with stack.worker_env("sim", QGATE_FAULTS="sim.delay_ms=20000"):
        reply = stack.solve(token, {"problem": problems.circuit(), "solver": "sim"}, budget_ms=30000)
        job_id = reply.json()["job_id"]
        cancelled = requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(token), timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(token), timeout=10)
        assert again.status_code == 409
    stack.wait_audited(job_id, "job.cancelled")


def test_idempotency_key_returns_the_same_job(stack: Stack, token: str) -> None:
    body = {"problem": problems.tsp(6)}
    first = stack.solve(token, body, 5000, **{"Idempotency-Key": "order-1"})
    second = stack.solve(token, body, 5000, **{"Idempotency-Key": "order-1"})
    assert first.status_code in (200, 202) and second.status_code in (200, 202)
    assert first.json()["job_id"] == second.json()["job_id"]
    reordered = {"problem": dict(reversed(list(body["problem"].items())))}  # same request, keys reordered
    third = stack.solve(token, reordered, 5000, **{"Idempotency-Key": "order-1"})
    assert third.status_code in (200, 202) and third.json()["job_id"] == first.json()["job_id"]
    other = stack.solve(token, {"problem": problems.tsp(7)}, 5000, **{"Idempotency-Key": "order-1"})
    assert other.status_code == 409


def test_concurrent_sync_requests_all_answer(stack: Stack, token: str) -> None:
    results: list[int] = []

    def one(i: int) -> None:
        results.append(stack.solve(token, {"problem": problems.tsp(10, seed=i)}, budget_ms=1000).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) and all(code in (200, 504) for code in results)
    assert results.count(200) >= 1


def test_audit_chain_verifies_and_detects_tampering(stack: Stack, token: str, tmp_path) -> None:
    job = _finished(stack, token, {"problem": problems.tsp(6)})
    stack.wait_audited(job["job_id"], "job.succeeded")
    reply = requests.get(stack.url + "/api/v1/audit/verify", headers=stack.headers(token), timeout=30)
    assert reply.status_code == 200 and reply.json()["valid"] is True and reply.json()["entries"] > 10
    mine = requests.get(f"{stack.url}/api/v1/audit/jobs/{job['job_id']}", headers=stack.headers(token), timeout=10)
    assert mine.status_code == 200 and mine.json()["entries"][-1]["type"] == "job.succeeded"

    copy = tmp_path / "audit.log"
    shutil.copy(stack.audit_path, copy)
    assert stack.cli("audit", "verify", "--log", str(copy)).returncode == 0
    lines = copy.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[3])
    edited["ts"] += 1
    tampered = {
        "edited": lines[:3] + [json.dumps(edited).encode() + b"\n"] + lines[4:],
        "deleted": lines[:3] + lines[4:],
        "reordered": lines[:3] + [lines[4], lines[3]] + lines[5:],
        "inserted": lines[:3] + [lines[1]] + lines[3:],
    }
    for case, content in tampered.items():
        copy.write_bytes(b"".join(content))
        done = stack.cli("audit", "verify", "--log", str(copy))
        assert done.returncode == 1, case
        assert "seq 3" in done.stderr, (case, done.stderr)


def test_metrics_count_jobs_fallbacks_and_queues(stack: Stack, token: str) -> None:
    text = requests.get(stack.url + "/metrics", headers=stack.headers(token), timeout=10).text
    assert 'qgate_jobs_finished_total{lane="heuristic",outcome="succeeded"}' in text
    assert 'qgate_fallbacks_total{from_lane="qpu",to_lane="sim"}' in text
    assert 'qgate_queue_depth{lane="qpu"}' in text
    assert "qgate_http_requests_total" in text
    ready = requests.get(stack.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["lanes"]["qpu"]["alive"]



TINY_VRP = "\n".join([
    "NAME : tiny-n5-k2", "TYPE : CVRP", "DIMENSION : 5", "EDGE_WEIGHT_TYPE : EUC_2D", "CAPACITY : 10",
    "NODE_COORD_SECTION", "1 0 0", "2 3 4", "3 6 0", "4 3 -4", "5 -3 0",
    "DEMAND_SECTION", "1 0", "2 5", "3 5", "4 5", "5 4", "DEPOT_SECTION", "1", "-1", "EOF", ""])


def test_qgate_solve_submits_a_vrplib_instance(stack: Stack, client: dict, tmp_path) -> None:
    instance = tmp_path / "tiny-n5-k2.vrp"
    instance.write_text(TINY_VRP)
    env = {**stack.env, "QGATE_CLIENT_ID": client["client_id"], "QGATE_CLIENT_SECRET": client["client_secret"]}
    argv = [str(BIN / "qgate"), "solve", str(instance), "--url", stack.url, "--budget-ms", "3000", "--seed", "4"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["kind"] == "cvrp"
    assert sorted(c for route in job["result"]["routes"] for c in route) == [1, 2, 3, 4]
    assert job["result"]["feasible"] and len(job["result"]["routes"]) >= 2  # 19 units, capacity 10
    assert job["request"]["metadata"] == {"instance": "tiny-n5-k2"}
    missing = subprocess.run([str(BIN / "qgate"), "solve", str(tmp_path / "none.vrp"), "--url", stack.url],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "qgate:" in missing.stderr
