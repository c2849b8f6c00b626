"""The qpu lane's prior for a QAOA run on the emulated device: angle search (the measured table), transpile
and noisy sampling, each following the problem; and a waiting job's ETA on it before any sample exists.
How close the prior is to measured runs: ``python -m bench.qpu_estimate`` (numbers in the README)."""

from __future__ import annotations

from datetime import datetime

import fakeredis
import numpy as np
import pytest

from jobs.model import public_view
from jobs.store import JobStore
from orchestrator.service import JobService, ServiceConfig, Submission
from routing.estimates import COLD_START_RUN_S, cold_start_run_s, qpu_prior_run_s
from routing.predict import PredictConfig
from routing.signals import LaneSignals
from solvers.capability import (
    QAOA_EVALUATIONS,
    emulated_sampling_seconds,
    qaoa_closed_form_seconds,
    qaoa_expected_seconds,
    qaoa_two_qubit_gates,
    qpu_qaoa_expected_seconds,
)
from solvers.problems import parse_problem
from tests.unit.test_orchestrator import Caller, Lanes, RecordingEnqueuer

BELL = {"kind": "circuit", "shots": 100, "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
                                                 "h q[0]; cx q[0],q[1]; measure q -> c;"}


def dense_qubo(n: int) -> dict:
    rng = np.random.default_rng(3)
    return {"kind": "qubo", "n": n, "terms": [[i, j, float(rng.integers(1, 6))] for i in range(n) for j in range(i, n)]}


def test_the_prior_is_the_search_plan_plus_transpile_plus_shots() -> None:
    parts = qpu_qaoa_expected_seconds(12, 66, shots=1024)
    assert parts["search"] == pytest.approx(qaoa_expected_seconds(12, 1, QAOA_EVALUATIONS[1]))
    assert parts["total"] == pytest.approx(parts["search"] + parts["transpile"] + parts["sample"])
    assert parts["sample"] > parts["search"] > parts["transpile"] > 0  # 12 noisy qubits: sampling dominates


def test_past_the_statevector_the_search_is_planned_in_closed_form() -> None:
    parts = qpu_qaoa_expected_seconds(24, 40)
    assert parts["search"] == pytest.approx(QAOA_EVALUATIONS[1] * qaoa_closed_form_seconds(24, 40))
    assert parts["search"] < qpu_qaoa_expected_seconds(20, 40)["search"]  # no 2**24 statevector


def test_sampling_follows_qubits_gates_and_shots_and_aers_method() -> None:
    assert emulated_sampling_seconds(12, 66, 2048) == pytest.approx(2 * emulated_sampling_seconds(12, 66, 1024),
                                                                     rel=0.01)  # shot by shot
    assert emulated_sampling_seconds(12, 66, 1024) > emulated_sampling_seconds(12, 11, 1024)
    # below 2**n < shots Aer evolves one density matrix for all the shots: shots barely matter
    assert emulated_sampling_seconds(8, 28, 1024) == pytest.approx(emulated_sampling_seconds(8, 28, 512))
    sizes = [emulated_sampling_seconds(n, n * (n - 1) // 2, 1024) for n in (4, 8, 10, 12, 16)]
    assert sizes == sorted(sizes) and sizes[0] < 0.1 and sizes[-1] > 30


def test_a_qaoa_kind_gets_its_own_prior_and_a_circuit_the_lanes_constant() -> None:
    small, large = parse_problem(dense_qubo(4)), parse_problem(dense_qubo(12))
    assert qpu_prior_run_s(small, "emulated") < 1.0 < COLD_START_RUN_S["qpu"] < 5.0 < qpu_prior_run_s(large, "emulated")
    assert qpu_prior_run_s(large, "emulated") == pytest.approx(
        qpu_qaoa_expected_seconds(12, qaoa_two_qubit_gates(large))["total"], abs=1e-3)
    assert qpu_prior_run_s(parse_problem(BELL), "emulated") is None
    assert qpu_prior_run_s(large, "ibm") is None  # a real device's time is its queue and hardware
    wide = parse_problem({"kind": "qubo", "n": 161, "terms": [[0, 1, 1.0]]})
    assert qpu_prior_run_s(wide, "emulated") is None  # past the largest encoding the lane builds
    assert cold_start_run_s("qpu") == COLD_START_RUN_S["qpu"] and cold_start_run_s("qpu", 7.5) == 7.5


def test_a_waiting_qaoa_job_is_predicted_with_its_own_prior() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    signals = LaneSignals(redis, PredictConfig())
    service = JobService(JobStore(redis, 3600, signals.observers()), RecordingEnqueuer(),
                         ServiceConfig(lease_grace_ms=1000), Lanes(), signals=signals)
    problem = parse_problem(dense_qubo(12))
    job, _ = service.submit(Caller(), Submission(problem, 60_000, {"solver": "qpu", "seed": 1}))
    prior = qpu_prior_run_s(problem, "emulated")
    assert job.run_prior_s == {"qpu": prior}
    queue = service.queue_of(service.store.get(job.job_id))
    assert queue is not None and queue["lane"] == "qpu" and f"this job's {prior:g} s" in queue["basis"]
    finish, start = (datetime.fromisoformat(queue[k].replace("Z", "+00:00")).timestamp()
                     for k in ("predicted_finish_at", "predicted_start_at"))
    assert finish - start == pytest.approx(prior, abs=0.01)
    assert "run_prior_s" not in public_view(job)  # the prior is the gateway's, not the contract's
