"""Routing problems on the qpu lane (emulated device, a real qpu worker) and replay of finished jobs.

One qpu worker runs fake_melbourne (15 qubits, median CX error 0.029: its useful size is
QPU_NOISE_BUDGET / 0.029 = 68 two-qubit gates before routing), so a 6-variable QUBO and a 4-node tsp fit
and a dense 13-variable QUBO (78 couplings) is refused by the planner for noise and falls back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import requests

from solvers.capability import QPU_NOISE_BUDGET
from tests.integration.stack import Stack

DEVICE = "fake_melbourne"
TSP4 = {"kind": "tsp", "locations": [[0, 0], [10, 0], [10, 10], [0, 12]]}


def dense_qubo(n: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    return {"kind": "qubo", "n": n,
            "terms": [[i, j, float(rng.integers(-5, 6) or 1)] for i in range(n) for j in range(i, n)]}


def finished(stack: Stack, token: str, body: dict, budget_ms: int = 60_000) -> dict:
    reply = stack.solve(token, body, budget_ms)
    assert reply.status_code == 202, reply.text
    return stack.wait_job(token, reply.json()["job_id"], timeout=120)


def replay(stack: Stack, *args: str):  # type: ignore[no-untyped-def]
    return stack.cli("replay", *args, "--json")


def test_routing_problems_on_the_qpu_lane_and_replay(stack: Stack, token: str, tmp_path: Path) -> None:
    with stack.worker_env("qpu", QGATE_QPU_BACKEND=DEVICE):
        jobs = {name: finished(stack, token, {"problem": problem, "solver": "qpu", "seed": 7})
                for name, problem in (("qubo", dense_qubo(6)), ("tsp", TSP4))}
        deep = finished(stack, token, {"problem": dense_qubo(13), "solver": "qpu", "seed": 7})
    for name, job in jobs.items():
        assert job["status"] == "succeeded", job
        assert job["solver"]["lane"] == "qpu" and job["solver"]["id"] == f"qpu-qaoa-{DEVICE}", (name, job["attempts"])
        q = job["provenance"]["solver_details"]["quantum"]
        assert q["mean_raw_energy"] < q["uniform_mean_energy"], (name, q)
        assert q["expected_energy"] < q["uniform_mean_energy"] and q["two_qubit_gates"] > 0
        assert 0 < q["feasible_share"] <= 1 and q["transpiled_depth"] > 0
        assert job["provenance"]["calibration"]["backend"] == DEVICE
    qpu_step = deep["plan"][0]
    assert deep["status"] == "succeeded" and deep["solver"]["lane"] != "qpu"
    assert qpu_step["lane"] == "qpu" and qpu_step["action"] == "skip"
    assert "78 two-qubit gates before routing > 68" in qpu_step["reason"] and "noise only" in qpu_step["reason"]
    assert f"{QPU_NOISE_BUDGET:g}" in qpu_step["reason"]

    # replay: a sim QAOA job and a heuristic job reproduce exactly, from the content-addressed problem
    sim = finished(stack, token, {"problem": TSP4, "solver": "sim", "seed": 5}, budget_ms=30_000)
    heuristic = finished(stack, token, {"problem": dense_qubo(8), "solver": "heuristic", "seed": 5}, budget_ms=5_000)
    for job in (sim, heuristic):
        assert job["status"] == "succeeded", job
        done = replay(stack, job["job_id"])
        assert done.returncode == 0, (done.stdout, done.stderr)
        report = json.loads(done.stdout)
        assert report["identical"] and report["fingerprint"] == job["provenance"]["fingerprint"]
        assert report["solver"] == job["solver"]
    assert sim["solver"]["id"] == "qaoa-aer" and heuristic["solver"]["id"] == "exact-qubo"

    # an auditor with only the problem and the receipt: replays, and refuses a tampered problem
    receipt = requests.get(f"{stack.url}/api/v1/audit/jobs/{sim['job_id']}/receipt",
                           headers=stack.headers(token), timeout=30)
    if receipt.status_code != 200:  # the receipt needs a checkpoint covering the job's entries
        stack.wait_audited(sim["job_id"], "job.succeeded")
        receipt = requests.get(f"{stack.url}/api/v1/audit/jobs/{sim['job_id']}/receipt",
                               headers=stack.headers(token), timeout=30)
    assert receipt.status_code == 200, receipt.text
    (tmp_path / "receipt.json").write_text(receipt.text)
    (tmp_path / "problem.json").write_text(json.dumps(TSP4))
    tampered = {**TSP4, "locations": [[0, 0], [10, 0], [10, 10], [0, 13]]}
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    audited = replay(stack, "--problem", str(tmp_path / "problem.json"), "--receipt", str(tmp_path / "receipt.json"))
    assert audited.returncode == 0 and json.loads(audited.stdout)["identical"], audited.stderr
    refused = replay(stack, "--problem", str(tmp_path / "tampered.json"), "--receipt", str(tmp_path / "receipt.json"))
    assert refused.returncode == 2 and "not the audited" in json.loads(refused.stdout)["refused"]
    missing = replay(stack, "job_doesnotexist")
    assert missing.returncode == 2
