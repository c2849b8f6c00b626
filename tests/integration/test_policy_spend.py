"""The policy engine and QPU spend allowances through a real stack of its own (gunicorn with two processes,
real Celery workers, real Redis): a policy file changed under the running stack is picked up without a
restart and audited; a broken one leaves the last good policy in force, loudly; 50 parallel qpu submits
against a $1 allowance never reserve more than $1; a pinned qpu job over its allowance gets 429."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from jobs.spend import periods, usage_key
from policy.engine import DEFAULT_DATA, DEFAULT_POLICY, PolicyBundle
from tests.integration import problems
from tests.integration.stack import Stack, running_stack, wait_for

SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic ops:read"


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(tmp_path_factory.mktemp("policy"))
    shutil.copy(DEFAULT_POLICY, folder / "qgate.rego")
    (folder / "data.json").write_text(json.dumps(
        {"qgate": {"tenants": {"trial": {"lanes": ["sim", "heuristic"]}}, "residency": []}}))
    return folder


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, policy_dir: Path) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("policy-stack")),
                       QGATE_POLICY_FILE=str(policy_dir / "qgate.rego"), QGATE_POLICY_DATA=str(policy_dir / "data.json"),
                       QGATE_POLICY_POLL_S="0.2", QGATE_QPU_PRICE_PER_TASK_USD="0.1",
                       QGATE_STANDARD_TIER_MAX_USD="100", WEB_CONCURRENCY="2") as running:
        yield running


def _accepted(stack: Stack, job_id: str) -> dict[str, Any]:
    entries = stack.wait_audited(job_id, "job.accepted")
    return next(e for e in entries if e["type"] == "job.accepted")["data"]


def _replace(path: Path, text: str) -> None:
    """Write, then rename: the way an operator (or a config management tool) should change it."""
    temp = path.with_suffix(".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def test_policy_changes_are_picked_up_and_a_broken_one_keeps_the_last_good(own_stack: Stack, policy_dir: Path) -> None:
    trial = own_stack.token(own_stack.create_client("trial", SCOPES))
    first = own_stack.solve(trial, {"problem": problems.circuit(shots=50)}, budget_ms=20000)
    assert first.status_code == 202, first.text
    job = own_stack.job(trial, first.json()["job_id"]).json()
    assert job["plan"][0] == {"lane": "qpu", "action": "skip", "reason": "policy: tenant: trial may not use the qpu lane"}
    good = PolicyBundle.load(policy_dir / "qgate.rego", policy_dir / "data.json").sha256
    assert _accepted(own_stack, job["job_id"])["policy"]["sha256"] == good

    rego = policy_dir / "qgate.rego"
    source = rego.read_text()
    _replace(rego, source + "\nthis is not rego {\n")  # broken under the running stack
    time.sleep(1.0)
    for _ in range(4):  # both gunicorn processes: every submit still planned by the last good policy
        reply = own_stack.solve(trial, {"problem": problems.circuit(shots=50)}, budget_ms=20000)
        assert reply.status_code == 202, reply.text
        assert _accepted(own_stack, reply.json()["job_id"])["policy"]["sha256"] == good
    ops = own_stack.token(own_stack.create_client("ops", "ops:read"))
    metrics = requests.get(own_stack.url + "/metrics", headers=own_stack.headers(ops), timeout=10).text
    failures = [line for line in metrics.splitlines() if line.startswith("qgate_policy_reload_failures_total")]
    assert failures and float(failures[0].split()[-1]) >= 1, failures
    assert "policy_reload_failed" in own_stack.web.tail(400)

    _replace(rego, source)
    _replace(policy_dir / "data.json", json.dumps({"qgate": {"tenants": {}, "residency": []}}))
    new = PolicyBundle.load(rego, policy_dir / "data.json").sha256

    def planned_on_qpu() -> dict[str, Any] | None:
        reply = own_stack.solve(trial, {"problem": problems.circuit(shots=50)}, budget_ms=20000)
        body = own_stack.job(trial, reply.json()["job_id"]).json()
        return body if body["plan"][0]["action"] == "try" else None

    wait_for(planned_on_qpu, 10, "the new policy to be in force")
    changed = wait_for(lambda: [e for e in own_stack.audit_entries() if e["type"] == "policy.changed"
                                and e["data"]["sha256"] == new], 20, "policy.changed in the audit log")
    assert changed[0]["data"]["previous"] == good and changed[0]["data"]["host"]
    assert len(changed) == 1  # once fleet-wide, though two processes loaded it


def test_parallel_qpu_submits_never_reserve_past_the_allowance(own_stack: Stack) -> None:
    """50 parallel submits against a $1.00 allowance at $0.10 each. How many reach the qpu lane can depend on
    timing (an attempt that expires in the queue releases its reservation, making room for a later submit),
    so the invariant is checked in the audit log's order, which is the order the admission scripts and
    settlements committed: reserved + spent never passes $1.00."""
    acme = own_stack.create_client("spendco", SCOPES)
    token = own_stack.token(acme)
    done = own_stack.cli("limits", "set", "--tenant", "spendco", "--qpu-usd-per-day", "1")
    assert done.returncode == 0, done.stderr
    time.sleep(1.1)  # in force within a second (jobs.spend.CACHE_S); CI once admitted 20 submits before it
    body = {"problem": problems.circuit(shots=20), "solver": "qpu"}  # estimate $0.10: at most 10 at a time

    def submit(_: int) -> requests.Response:
        return own_stack.solve(token, body, budget_ms=30000)

    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(submit, range(50)))
    assert [r.status_code for r in replies] == [202] * 50, [r.text for r in replies if r.status_code != 202][:3]
    plans = {r.json()["job_id"]: own_stack.job(token, r.json()["job_id"]).json()["plan"] for r in replies}
    on_qpu = {job for job, plan in plans.items() if plan[0]["action"] == "try"}
    assert len(on_qpu) >= 10
    skipped = {plan[0]["reason"] for plan in plans.values() if plan[0]["action"] == "skip"}
    assert all(r.startswith("quota: $") and r.endswith("left today, estimate $0.10") for r in skipped), skipped

    redis = own_stack.redis()
    for job_id in plans:  # every reservation ends settled (ran) or released
        own_stack.wait_job(token, job_id, timeout=120)
    wait_for(lambda: len([e for e in own_stack.audit_entries() if e["type"] in ("spend.settled", "spend.released")
                          and e.get("job_id") in on_qpu]) == len(on_qpu), 30, "every qpu job's settlement audited")
    committed, most = 0.0, 0.0
    for entry in own_stack.audit_entries():
        if entry.get("job_id") not in on_qpu:
            continue
        if entry["type"] == "job.accepted":
            committed += 0.10
        elif entry["type"] in ("spend.settled", "spend.released"):
            committed += entry["data"]["spent_usd"] - entry["data"]["reserved_usd"]
        most = max(most, committed)
    assert most <= 1.0 + 1e-9, f"reserved + spent reached ${most:.2f} of $1.00"
    day = redis.hgetall(usage_key("spendco", "d", periods(time.time())["d"]))
    assert int(day.get("usd_reserved", 0)) == 0 and 0 < int(day["usd_spent"]) <= 1_000_000
    assert int(day["usd_spent"]) == round(committed * 1_000_000)

    limits = requests.get(own_stack.url + "/api/v1/usage/limits", headers=own_stack.headers(token), timeout=10).json()
    row = limits["limits"][0]
    assert row["allowance"] == 1.0 and row["reserved"] == 0
    assert row["spent"] == pytest.approx(committed) and row["left"] == pytest.approx(1.0 - committed)


def test_a_pinned_qpu_job_past_the_allowance_is_429_with_the_quota(own_stack: Stack) -> None:
    done = own_stack.cli("limits", "set", "--tenant", "tightco", "--qpu-usd-per-day", "0.05")
    assert done.returncode == 0, done.stderr
    pinned = own_stack.token(own_stack.create_client("tightco", "quantum:solve solver:qpu"))
    time.sleep(1.1)  # each ingress process reads the allowances at most once a second (jobs.spend.CACHE_S)
    refused = own_stack.solve(pinned, {"problem": problems.circuit(shots=20), "solver": "qpu"}, budget_ms=30000)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "quota: $0.05 of $0.05 left today, estimate $0.10"
    assert int(refused.headers["Retry-After"]) >= 1
