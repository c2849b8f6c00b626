"""QAOA on the qpu lane: the capability check the planner and the worker share, and runs on emulated devices."""

from __future__ import annotations

import time

import numpy as np
import pytest

from routing.estimates import lane_costs
from solvers.base import LaneLimits, SolverRefused
from solvers.capability import QPU_NOISE_BUDGET, QPU_QAOA_SHOTS, check_qpu_qaoa, qpu_useful_two_qubit_gates
from solvers.encodings import encode
from solvers.problems import parse_problem
from solvers.qpu import EmulatedQpu
from solvers.qaoa_p1 import METHOD as CLOSED_FORM
from solvers.qpu_qaoa import QpuQaoaSolver, counts_to_rows
from solvers.registry import LANE_KINDS, choose_solver, lane_solvers, static_verdict


def dense_qubo(n: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    terms = [[i, j, float(rng.integers(-5, 6) or 1)] for i in range(n) for j in range(i, n)]
    return {"kind": "qubo", "n": n, "terms": terms}


TSP4 = {"kind": "tsp", "locations": [[0, 0], [10, 0], [10, 10], [0, 12]]}


@pytest.fixture(scope="module")
def guadalupe() -> EmulatedQpu:
    return EmulatedQpu("fake_guadalupe")


def test_the_qpu_lane_plans_routing_kinds_and_keeps_circuits() -> None:
    assert {"circuit", "qubo", "tsp", "assignment"} <= LANE_KINDS["qpu"]
    assert [s.id for s in lane_solvers("qpu", adapter=EmulatedQpu("fake_manila"))] == \
        ["qpu-fake_manila", "qpu-qaoa-fake_manila"]


@pytest.mark.parametrize("data, limits, fragment", [
    (dense_qubo(6), LaneLimits(max_qubits=5), "6 qubits after layout > 5"),
    (TSP4, LaneLimits(max_qubits=8), "9 qubits after layout > 8"),
    (dense_qubo(13), LaneLimits(max_qubits=27, max_two_qubit_gates=69), "78 two-qubit gates before routing > 69"),
    (dense_qubo(6), LaneLimits(max_shots=100), f"{QPU_QAOA_SHOTS} shots > 100"),
    ({"kind": "tsp", "locations": [[i, i * i] for i in range(14)]}, LaneLimits(), "169 qubits > 160"),
])
def test_what_the_device_cannot_hold_is_refused_with_its_reason(data: dict, limits: LaneLimits, fragment: str) -> None:
    problem = parse_problem(data)
    for verdict in (check_qpu_qaoa(problem, limits), static_verdict("qpu", problem, limits)):
        assert not verdict.ok and verdict.reason.startswith("capacity:") and fragment in verdict.reason
    if "two-qubit" in fragment:
        assert "noise only" in verdict.reason and f"{QPU_NOISE_BUDGET:g}" in verdict.reason


def test_a_large_routing_problem_is_refused_before_it_is_encoded() -> None:
    problem = parse_problem({"kind": "tsp", "locations": [[i, 2 * i] for i in range(200)]})
    assert "qubits after layout" in static_verdict("qpu", problem, LaneLimits(max_qubits=27,
                                                                             max_two_qubit_gates=50)).reason
    started = time.process_time()  # 39,601 variables: encoding them would take minutes and gigabytes
    assert "the largest QAOA encoding" in static_verdict("qpu", problem, LaneLimits()).reason
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize("data", [
    {"kind": "tsp", "locations": [[i, i * i] for i in range(7)]},
    {"kind": "qubo", "n": 150, "terms": [[i, i + 1, 1.0] for i in range(149)]},
], ids=["tsp7-36-qubits", "qubo150-chain"])
def test_past_the_statevector_a_device_large_enough_is_planned(data: dict) -> None:
    """Past 20 variables the angles come from the closed form, so only the device and its noise limit."""
    problem = parse_problem(data)
    assert static_verdict("qpu", problem, LaneLimits(max_qubits=156, max_two_qubit_gates=500)).ok
    assert "qubits after layout > 16" in static_verdict("qpu", problem, LaneLimits(max_qubits=16)).reason


def test_the_useful_size_follows_the_device_error() -> None:
    assert qpu_useful_two_qubit_gates(None) is None and qpu_useful_two_qubit_gates(0.0) is None
    assert qpu_useful_two_qubit_gates(0.01) == int(QPU_NOISE_BUDGET / 0.01)
    assert qpu_useful_two_qubit_gates(0.02) < qpu_useful_two_qubit_gates(0.005)
    limits = EmulatedQpu("fake_guadalupe").limits()
    assert limits.max_two_qubit_gates == qpu_useful_two_qubit_gates(0.010136906670553988)
    assert LaneLimits.from_dict(limits.as_dict()) == limits  # what the heartbeat publishes round-trips


def test_the_qpu_cost_estimate_counts_the_qaoa_shots() -> None:
    costs = lane_costs(parse_problem(dense_qubo(6)), 0.3, 0.001)
    assert costs["qpu"] == pytest.approx(0.3 + 0.001 * QPU_QAOA_SHOTS) and costs["sim"] == 0.0


def test_counts_become_little_endian_rows_in_basis_state_order() -> None:
    rows, shots = counts_to_rows({"100": 1, "011": 2, "1": 4}, 3)
    assert rows.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]] and shots.tolist() == [4, 2, 1]
    wide = "1" + "0" * 125 + "1"  # 127 qubits: no int64 holds the index
    rows, shots = counts_to_rows({wide: 3, "0" * 127: 1}, 127)
    assert rows.shape == (2, 127) and rows[1, 0] == rows[1, 126] == 1 and rows[1].sum() == 2
    assert shots.tolist() == [1, 3]


@pytest.mark.parametrize("data", [dense_qubo(6), TSP4], ids=["qubo6", "tsp4"])
def test_samples_from_the_noisy_device_beat_uniform_sampling_and_repeat_with_the_seed(
        guadalupe: EmulatedQpu, data: dict) -> None:
    problem = parse_problem(data)
    solver = QpuQaoaSolver(guadalupe, shots=512)
    assert choose_solver("qpu", problem, guadalupe.limits(), [solver])[0] is solver
    first = solver.solve(problem, time_limit_s=30, seed=11)
    q = first.details["quantum"]
    assert q["mean_raw_energy"] < q["uniform_mean_energy"]
    assert q["expected_energy"] <= q["mean_raw_energy"] + 1e-9 or q["expected_energy"] < q["uniform_mean_energy"]
    assert q["two_qubit_gates"] > 0 and q["transpiled_depth"] > 0 and q["reps"] == 1
    assert first.details["cost"]["usd"] == 0.0 and first.calibration and first.calibration["backend"] == "fake_guadalupe"
    assert q["optimizer_evaluations"] <= q["planned_evaluations"]
    again = solver.solve(problem, time_limit_s=30, seed=11)
    assert again.result == first.result and again.details["quantum"]["mean_raw_energy"] == q["mean_raw_energy"]


def test_past_the_statevector_the_closed_form_angles_beat_uniform_sampling_on_the_device(
        guadalupe: EmulatedQpu) -> None:
    """The closed-form path end to end on the emulated device (the statevector cap lowered to 4 so a
    6-variable problem takes it: Aer cannot sample a noisy 21+ qubit circuit in a test's time)."""
    problem = parse_problem(dense_qubo(6))
    solver = QpuQaoaSolver(guadalupe, shots=512, statevector_max_qubits=4)
    first = solver.solve(problem, time_limit_s=30, seed=5)
    q = first.details["quantum"]
    assert q["angles_from"] == CLOSED_FORM and "ground_state_probability" not in q
    assert q["mean_raw_energy"] < q["uniform_mean_energy"] and q["expected_energy"] < q["uniform_mean_energy"]
    statevector = QpuQaoaSolver(guadalupe, shots=512).solve(problem, time_limit_s=30, seed=5).details["quantum"]
    assert statevector["angles_from"] == "noiseless statevector search"
    assert q["expected_energy"] == pytest.approx(statevector["expected_energy"], rel=1e-3)
    assert q["uniform_mean_energy"] == pytest.approx(statevector["uniform_mean_energy"])
    again = solver.solve(problem, time_limit_s=30, seed=5)
    assert again.result == first.result and again.details["quantum"]["gammas"] == q["gammas"]


def test_a_circuit_deeper_than_the_device_allows_is_refused_after_transpiling() -> None:
    solver = QpuQaoaSolver(EmulatedQpu("fake_guadalupe", max_depth=5), shots=64)
    with pytest.raises(SolverRefused, match="after transpiling to fake_guadalupe"):
        solver.solve(parse_problem(dense_qubo(4)), time_limit_s=20, seed=1)


def test_a_device_job_still_queued_at_the_time_limit_is_cancelled_at_the_provider() -> None:
    adapter = EmulatedQpu("fake_manila", queue_delay_s=60.0)
    solver = QpuQaoaSolver(adapter, shots=64)
    problem = parse_problem(dense_qubo(3))
    solver.angles.optimise_angles(encode(problem), 60, time.perf_counter() + 60)  # warm, as a worker is
    with pytest.raises(TimeoutError, match="cancelled"):
        solver.solve(problem, time_limit_s=4, seed=1)
    (handle,) = list(adapter.jobs._entries)
    assert adapter.poll(handle) == "cancelled"


def test_a_problem_the_emulator_cannot_sample_in_the_time_left_is_refused_before_the_search(
        guadalupe: EmulatedQpu) -> None:
    """A dense 16-variable QUBO passes the device's limits, but Aer needs ~100 s to sample its noisy circuit
    (measured: 115 s): with a 6 s limit the attempt is refused at once, so the next lane gets the budget."""
    solver = QpuQaoaSolver(guadalupe)
    started = time.process_time()
    with pytest.raises(SolverRefused, match=r"capacity: sampling 16 qubits on the emulated fake_guadalupe"):
        solver.solve(parse_problem(dense_qubo(16)), time_limit_s=6, seed=1)
    assert time.process_time() - started < 1.0
    assert guadalupe.sampling_seconds(6, 21, 1024) < 1.0  # what the tests above run stays well inside
