"""Portfolio races and shadow runs on the shared stack: real workers, the real ingress, the watchdog."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.integration import problems
from tests.integration.stack import Stack, wait_for

QUBO = {"kind": "qubo", "n": 6, "terms": [[0, 0, -1], [1, 1, -1], [2, 2, 2], [3, 3, -1], [4, 4, 1], [5, 5, -2],
                                          [0, 1, 2], [1, 2, -1], [2, 3, 1], [3, 4, -2], [4, 5, 1], [0, 5, 1]]}


def _outcomes(job: dict[str, Any]) -> dict[str, str]:
    return {a["lane"]: a["outcome"] for a in job["attempts"]}


def test_a_portfolio_with_an_exact_lane_ends_at_the_proven_optimum(stack: Stack, token: str) -> None:
    # the heuristic lane enumerates the QUBO and proves its optimum; the sim lane is held by a fault drill so
    # that it is surely still running then (its 6-variable QAOA alone can finish first, within 0.3 s)
    assert stack.cli("faults", "set", "sim.delay_ms=15000").returncode == 0
    try:
        reply = stack.solve(token, {"problem": QUBO, "strategy": "portfolio", "seed": 3}, budget_ms=20000)
        assert reply.status_code == 202, reply.text
        started = time.monotonic()
        job = stack.wait_job(token, reply.json()["job_id"])
    finally:
        stack.cli("faults", "clear", "sim")
    assert time.monotonic() - started < 10, "the proof should end the race long before the budget"
    assert job["status"] == "succeeded" and job["solver"]["lane"] == "heuristic"
    assert _outcomes(job) == {"qpu": "skipped", "heuristic": "succeeded", "sim": "cancelled"}
    assert job["portfolio"]["winner"] == "heuristic" and job["portfolio"]["margins"]["sim"] is None
    assert job["provenance"]["solver_details"]["optimal"] is True
    winner = next(a for a in job["attempts"] if a["outcome"] == "succeeded")
    assert winner["objective"] == job["result"]["energy"] == job["portfolio"]["objective"]
    events = wait_for(lambda: [e for e in stack.audit_entries() if e.get("job_id") == job["job_id"]
                               and e["type"] == "attempt.stopped"] or None, 15, "the loser's stop")
    assert events[0]["data"]["lane"] == "sim"


def test_a_short_budget_keeps_the_best_of_what_finished(stack: Stack, token: str) -> None:
    # the heuristic lane is held past the budget (a fault drill): the sim lane's answer is served
    assert stack.cli("faults", "set", "heuristic.delay_ms=20000").returncode == 0
    try:
        reply = stack.solve(token, {"problem": QUBO, "strategy": "portfolio", "seed": 3}, budget_ms=4000)
        job = stack.wait_job(token, reply.json()["job_id"], timeout=20)
    finally:
        stack.cli("faults", "clear", "heuristic")
    assert job["status"] == "succeeded" and job["solver"]["lane"] == "sim", job
    assert _outcomes(job)["heuristic"] in ("timeout", "cancelled")
    assert job["portfolio"]["winner"] == "sim" and job["portfolio"]["margins"]["heuristic"] is None


def test_sync_portfolio_answers_within_its_budget(stack: Stack, token: str) -> None:
    started = time.monotonic()
    reply = stack.solve(token, {"problem": problems.tsp(5), "strategy": "portfolio"}, budget_ms=1000)
    elapsed = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "succeeded" and job["solver"]["lane"] == "heuristic" and elapsed < 1.5
    assert job["portfolio"]["winner"] == "heuristic"


def test_a_portfolio_loser_is_lane_evidence(stack: Stack, token: str) -> None:
    # the sim lane fails and the heuristic lane, held 2 s, proves the optimum after it (fault drills): a
    # finished attempt that did not win, reported as a portfolio run

    def report(**params: str) -> dict[str, Any]:
        reply = requests.get(stack.url + "/api/v1/reports/lanes", params={"kind": "qubo", **params},
                             headers=stack.headers(token), timeout=10)
        assert reply.status_code == 200, reply.text
        return next((r for r in reply.json()["rows"] if r["lane"] == "sim"), {"runs": 0, "portfolio_runs": 0})

    before = report()
    assert stack.cli("faults", "set", "sim.fail_rate=1").returncode == 0
    assert stack.cli("faults", "set", "heuristic.delay_ms=2000").returncode == 0
    try:
        reply = stack.solve(token, {"problem": QUBO, "strategy": "portfolio", "seed": 3}, budget_ms=20000)
        job = stack.wait_job(token, reply.json()["job_id"], timeout=30)
    finally:
        stack.cli("faults", "clear", "sim")
        stack.cli("faults", "clear", "heuristic")
    assert job["status"] == "succeeded" and _outcomes(job)["sim"] == "failed", job
    row = report()
    assert row["portfolio_runs"] == before["portfolio_runs"] + 1 and row["runs"] == before["runs"] + 1
    assert row["shadow_runs"] == row["runs"] - row["portfolio_runs"]
    only = report(source="portfolio")
    assert only["runs"] == only["portfolio_runs"] == row["portfolio_runs"] and only["shadow_runs"] == 0
    audit = wait_for(lambda: [e for e in stack.audit_entries() if e["type"] == "portfolio.compared"
                              and e["job_id"] == job["job_id"]] or None, 15, "the comparison's audit")
    (compared,) = audit[0]["data"]["comparisons"]
    assert compared["lane"] == "sim" and compared["feasible"] is False and compared["served_lane"] == "heuristic"
    csv = requests.get(stack.url + "/api/v1/reports/lanes", params={"format": "csv", "kind": "qubo"},
                       headers=stack.headers(token), timeout=10)
    assert csv.text.splitlines()[0].endswith(",shadow_runs,portfolio_runs")


def test_a_shadow_run_changes_nothing_served_and_is_reported(stack: Stack, token: str) -> None:
    body = {"problem": problems.tsp(4, seed=5), "solver": "heuristic"}
    plain = []
    for _ in range(3):
        started = time.monotonic()
        reply = stack.solve(token, body, budget_ms=1000)
        plain.append(time.monotonic() - started)
        assert reply.status_code == 200
    expected = reply.json()["result"]
    shadowed, shadow_ids, served_ids = [], [], {}
    for _ in range(3):
        started = time.monotonic()
        reply = stack.solve(token, {**body, "shadow": ["sim"]}, budget_ms=1000)
        shadowed.append(time.monotonic() - started)
        assert reply.status_code == 200, reply.text
        job = reply.json()
        assert job["result"] == expected and job["solver"]["lane"] == "heuristic"
        assert [a["lane"] for a in job["attempts"]] == ["heuristic"]
        shadow_ids.append(job["shadow"][0]["job_id"])
        served_ids[job["shadow"][0]["job_id"]] = job["job_id"]
    # the shadow is its own job on the sim lane's batch queue: the served answer does not wait for it
    print(f"sync latency without shadow {sorted(plain)}, with {sorted(shadowed)}")
    assert sorted(shadowed)[1] < sorted(plain)[1] + 0.15, (plain, shadowed)
    assert job["shadow"][0]["lane"] == "sim" and all(shadow_ids)
    ended = [stack.wait_job(token, shadow_id, timeout=40) for shadow_id in shadow_ids]
    done = [shadow_job for shadow_job in ended if shadow_job["status"] == "succeeded"]
    assert done, [(shadow_job["error"], shadow_job["attempts"]) for shadow_job in ended]  # QAOA on 9 qubits, 10 s
    shadow_job, shadow_id = done[-1], done[-1]["job_id"]
    served_cost = job["result"]["cost"]

    def reported() -> dict[str, Any] | None:
        rows = requests.get(stack.url + "/api/v1/reports/lanes", params={"kind": "tsp"},
                            headers=stack.headers(token), timeout=10).json()["rows"]
        row = next((r for r in rows if r["lane"] == "sim"), None)
        return row if row and row["runs"] >= 3 else None

    row = wait_for(reported, 30, "the shadow runs in the lane report")
    assert row["kind"] == "tsp" and row["compared"] >= 1
    # QAOA's repaired tour is never better than the heuristic lane's proven optimum
    gap = (shadow_job["result"]["cost"] - served_cost) / served_cost
    assert row["worse_share"] + row["equal_share"] == 1.0 and row["mean_gap"] >= 0
    audit = wait_for(lambda: [e for e in stack.audit_entries() if e["type"] == "shadow.compared"
                              and e["data"]["shadow_job_id"] == shadow_id] or None, 15, "the comparison's audit")
    assert abs(audit[0]["data"]["gap"] - gap) < 1e-9 and audit[0]["job_id"] == served_ids[shadow_id]
    assert audit[0]["data"]["served_objective"] == served_cost
    csv = requests.get(stack.url + "/api/v1/reports/lanes", params={"format": "csv", "kind": "tsp"},
                       headers=stack.headers(token), timeout=10)
    assert csv.headers["Content-Type"].startswith("text/csv") and csv.text.startswith("lane,kind,runs")


def test_an_operators_default_shadows_a_tenants_jobs(stack: Stack, token: str) -> None:
    assert stack.cli("shadow", "set", "--tenant", "acme", "--lanes", "sim").returncode == 0
    try:
        job = stack.solve(token, {"problem": problems.tsp(4), "solver": "heuristic"}, budget_ms=1000).json()
    finally:
        assert stack.cli("shadow", "clear", "--tenant", "acme").returncode == 0
    assert job["status"] == "succeeded" and job["shadow"][0]["lane"] == "sim"
    assert stack.wait_job(token, job["shadow"][0]["job_id"])["request"]["priority"] == "batch"
    again = stack.solve(token, {"problem": problems.tsp(4), "solver": "heuristic"}, budget_ms=1000).json()
    assert "shadow" not in again
    assert stack.cli("shadow", "set", "--tenant", "acme", "--lanes", "gpu").returncode == 2


def test_shadow_and_portfolio_refusals_say_where(stack: Stack) -> None:
    limited = stack.token(stack.create_client("acme", "quantum:solve solver:heuristic"))
    reply = stack.solve(limited, {"problem": problems.tsp(4), "shadow": ["heuristic", "qpu"]}, budget_ms=1000)
    assert reply.status_code == 403 and reply.json()["errors"][0]["loc"] == ["body", "shadow", 1]
    report = requests.get(stack.url + "/api/v1/reports/lanes", params={"tenant": "*"},
                          headers=stack.headers(limited), timeout=10)
    assert report.status_code == 403
    bad = requests.get(stack.url + "/api/v1/reports/lanes", params={"kind": "chess"},
                       headers=stack.headers(limited), timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"][0]["loc"] == ["query", "kind"]
    bad = requests.get(stack.url + "/api/v1/reports/lanes", params={"source": "rumour"},
                       headers=stack.headers(limited), timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"][0]["loc"] == ["query", "source"]
