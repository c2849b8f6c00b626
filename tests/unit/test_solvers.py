"""The solvers on real instances: answers checked against brute force and by solvers.objective."""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solvers.circuits import BELL, GHZ3
from solvers.base import LaneLimits, NoFeasibleSolution, SolverRefused
from solvers.objective import score
from solvers.problems import canonical_json, parse_problem
from solvers.registry import LANES, choose_solver, lane_solvers, static_verdict

ROOT = Path(__file__).resolve().parents[2]




def _wide(qubits: int) -> str:
    return (f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\n'
            "h q[0];\nmeasure q -> c;\n")


def _points(n: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(n)]


def _brute_force_tsp(problem) -> float:
    d = problem.distance_matrix()
    n = problem.size
    best = float("inf")
    for perm in itertools.permutations(range(1, n)):
        tour = (0, *perm)
        best = min(best, sum(d[a][b] for a, b in zip(tour, tour[1:] + tour[:1])))
    return best


@pytest.fixture(scope="module")
def heuristic():
    by_id = {s.id: s for s in lane_solvers("heuristic")}
    return {"pyvrp": by_id["pyvrp"], "cbc": by_id["pulp-cbc"], "qubo": by_id["exact-qubo"]}


# --- PyVRP ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, seed", [(5, 1), (6, 2), (8, 3)])
def test_tsp_matches_brute_force_on_coordinates(heuristic, n, seed):
    problem = parse_problem({"kind": "tsp", "locations": _points(n, seed)})
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.2, seed=seed)
    scored = score(problem, solution.result)
    # distances are rounded to 1/1000 for PyVRP: allow that much per edge
    assert scored["cost"] <= _brute_force_tsp(problem) + n * 1e-3
    assert solution.details["feasible"] is True
    assert solution.details["iterations"] > 0


def test_tsp_matches_brute_force_on_an_asymmetric_matrix(heuristic):
    rng = random.Random(11)
    n = 7
    d = [[0 if i == j else rng.randint(1, 50) for j in range(n)] for i in range(n)]
    problem = parse_problem({"kind": "tsp", "distances": d})
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.2, seed=0)
    assert score(problem, solution.result)["cost"] == _brute_force_tsp(problem)


def test_tsp_20_nodes_within_time_limit(heuristic):
    problem = parse_problem({"kind": "tsp", "locations": _points(20, 20)})
    started = time.perf_counter()
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.2, seed=None)
    assert time.perf_counter() - started < 0.4
    scored = score(problem, solution.result)
    assert sorted(scored["tour"]) == list(range(20))
    assert solution.details["seed"] == 0


def test_tsp_two_nodes(heuristic):
    problem = parse_problem({"kind": "tsp", "distances": [[0, 3], [4, 0]]})
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.2, seed=None)
    assert score(problem, solution.result) == {"tour": [0, 1], "cost": 7.0}


def _cvrp_instance(**extra):
    data = {"kind": "cvrp", "locations": _points(10, 5),
            "demands": [0, 3, 4, 2, 5, 3, 2, 4, 1, 6], "vehicle_capacity": 10, "num_vehicles": 4}
    data.update(extra)
    return parse_problem(data)


def test_cvrp_feasible(heuristic):
    problem = _cvrp_instance()
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.2, seed=1)
    scored = score(problem, solution.result)
    assert scored["feasible"] is True, scored.get("violations")
    assert solution.details["feasible"] is True
    assert len(scored["routes"]) >= 3  # 30 units of demand need at least 3 trucks of 10


def test_cvrp_with_time_windows_feasible(heuristic):
    d = _cvrp_instance().distance_matrix()
    # every customer must be reached within 1.5× its direct distance from the depot, +20 slack
    windows = [[0, 1000]] + [[0, 1.5 * d[0][i] + 20] for i in range(1, 10)]
    problem = _cvrp_instance(time_windows=windows, service_times=[0] + [2.5] * 9, num_vehicles=9)
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.3, seed=2)
    scored = score(problem, solution.result)
    assert scored["feasible"] is True, scored.get("violations")
    assert solution.details["feasible"] is True


@pytest.mark.filterwarnings("ignore::pyvrp.exceptions.PenaltyBoundWarning")
def test_cvrp_too_few_vehicles_is_reported_infeasible(heuristic):
    problem = _cvrp_instance(num_vehicles=2)  # 30 units of demand, 2 × 10 capacity
    solution = heuristic["pyvrp"].solve(problem, time_limit_s=0.1, seed=0)
    assert solution.details["feasible"] is False
    assert score(problem, solution.result)["feasible"] is False


def test_same_seed_same_answer():
    from solvers.heuristic import PyVrpRouting

    solver = PyVrpRouting(max_iterations=300)
    problem = parse_problem({"kind": "cvrp", "locations": _points(40, 9), "demands": [0] + [1] * 39,
                             "vehicle_capacity": 8, "num_vehicles": 8})
    first = solver.solve(problem, time_limit_s=5, seed=42)
    second = solver.solve(problem, time_limit_s=5, seed=42)
    assert first.details["iterations"] == second.details["iterations"] == 300
    assert first.result == second.result


def test_pyvrp_capacity_refusal(heuristic):
    problem = parse_problem({"kind": "tsp", "locations": _points(30, 1)})
    verdict = heuristic["pyvrp"].can_solve(problem, LaneLimits(max_nodes=20))
    assert verdict.reason == "capacity: 30 nodes > 20"
    assert heuristic["pyvrp"].can_solve(problem, LaneLimits()).ok


# --- CBC assignment ------------------------------------------------------------------------------

def test_assignment_optimal_vs_brute_force(heuristic):
    rng = random.Random(3)
    loads, trucks = 6, 3
    problem = parse_problem({
        "kind": "assignment",
        "costs": [[rng.randint(1, 20) for _ in range(trucks)] for _ in range(loads)],
        "weights": [rng.randint(1, 6) for _ in range(loads)],
        "capacities": [9, 8, 7],
    })
    best = float("inf")
    for choice in itertools.product(range(trucks), repeat=loads):
        used = [0.0] * trucks
        for load, truck in enumerate(choice):
            used[truck] += problem.weights[load]
        if all(u <= c for u, c in zip(used, problem.capacities)):
            best = min(best, sum(problem.costs[load][t] for load, t in enumerate(choice)))
    solution = heuristic["cbc"].solve(problem, time_limit_s=5, seed=None)
    scored = score(problem, solution.result)
    assert scored["feasible"] is True
    assert scored["cost"] == best
    assert solution.details["optimal"] is True
    assert solution.details["status"] == "Optimal"


@pytest.mark.parametrize("weights, capacities, reason", [
    ([6, 12], [10, 10], "load 1 weighs 12 > the largest truck capacity 10"),
    ([6, 6, 6], [10, 10], "no assignment respects every truck's capacity"),
])
def test_assignment_infeasible(heuristic, weights, capacities, reason):
    problem = parse_problem({"kind": "assignment", "costs": [[1] * len(capacities)] * len(weights),
                             "weights": weights, "capacities": capacities})
    with pytest.raises(NoFeasibleSolution) as err:
        heuristic["cbc"].solve(problem, time_limit_s=5, seed=None)
    assert reason in str(err.value)
    assert str(err.value).startswith("infeasible: ")


# --- exact QUBO ----------------------------------------------------------------------------------

def test_qubo_exact_vs_brute_force(heuristic):
    rng = random.Random(5)
    n = 10
    terms = [[i, j, rng.uniform(-1, 1)] for i in range(n) for j in range(i, n) if rng.random() < 0.5]
    problem = parse_problem({"kind": "qubo", "n": n, "terms": terms})
    best = min(score(problem, {"bits": list(bits)})["energy"]
               for bits in itertools.product((0, 1), repeat=n))
    solution = heuristic["qubo"].solve(problem, time_limit_s=5, seed=None)
    assert score(problem, solution.result)["energy"] == pytest.approx(best, abs=1e-12)


def test_qubo_ties_go_to_the_lexicographically_smallest_vector(heuristic):
    tie = parse_problem({"kind": "qubo", "n": 3, "terms": [[0, 0, -1], [1, 1, -1], [0, 1, 2]]})
    assert heuristic["qubo"].solve(tie, time_limit_s=5, seed=None).result == {"bits": [0, 1, 0]}
    flat = parse_problem({"kind": "qubo", "n": 4, "terms": []})
    assert heuristic["qubo"].solve(flat, time_limit_s=5, seed=None).result == {"bits": [0, 0, 0, 0]}


def test_qubo_exact_20_variables(heuristic):
    rng = random.Random(8)
    terms = [[i, j, rng.uniform(-1, 1)] for i in range(20) for j in range(i, 20)]
    problem = parse_problem({"kind": "qubo", "n": 20, "terms": terms})
    solution = heuristic["qubo"].solve(problem, time_limit_s=10, seed=None)
    energy = score(problem, solution.result)["energy"]
    rng_bits = random.Random(1)
    samples = (score(problem, {"bits": [rng_bits.randint(0, 1) for _ in range(20)]})["energy"]
               for _ in range(200))
    assert all(energy <= s + 1e-12 for s in samples)
    assert solution.details["states"] == 2**20


def test_qubo_capacity_refusal(heuristic):
    problem = parse_problem({"kind": "qubo", "n": 30, "terms": [[0, 1, 1.0]]})
    assert heuristic["qubo"].can_solve(problem, LaneLimits()).reason == \
        "capacity: n=30 > 20 for exact enumeration"
    with pytest.raises(SolverRefused, match="n=30 > 20"):
        heuristic["qubo"].solve(problem, time_limit_s=1, seed=None)


# --- Aer -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aer():
    return next(s for s in lane_solvers("sim") if s.id == "aer")


def test_bell_on_aer(aer):
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 2000})
    solution = aer.solve(problem, time_limit_s=30, seed=0)
    counts = score(problem, solution.result)["counts"]
    assert set(counts) == {"00", "11"}
    assert 800 < counts["00"] < 1200
    assert solution.details["shots"] == 2000
    assert solution.details["seed_simulator"] != 0


def test_aer_seeded_runs_repeat(aer):
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 500})
    first = aer.solve(problem, time_limit_s=30, seed=7).result
    assert aer.solve(problem, time_limit_s=30, seed=7).result == first
    others = [aer.solve(problem, time_limit_s=30, seed=s).result for s in (8, 9, 10)]
    assert any(o != first for o in others)


def test_aer_counts_have_no_register_spaces(aer):
    qasm = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg a[1];\ncreg b[1];\n'
            "x q[1];\nmeasure q[0] -> a[0];\nmeasure q[1] -> b[0];\n")
    problem = parse_problem({"kind": "circuit", "qasm": qasm, "shots": 100})
    assert aer.solve(problem, time_limit_s=30, seed=1).result == {"counts": {"10": 100}}


def test_aer_capacity_refusals(aer):
    wide = parse_problem({"kind": "circuit", "qasm": _wide(30), "shots": 10})
    assert aer.can_solve(wide, LaneLimits()).reason == "capacity: 30 qubits > 24"
    assert aer.can_solve(wide, LaneLimits(max_qubits=32)).ok
    bell = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 5000})
    assert aer.can_solve(bell, LaneLimits(max_shots=1000)).reason == "capacity: 5000 shots > 1000"


# --- emulated QPU --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qpu():
    solver = lane_solvers("qpu")[0]
    return solver


def test_ghz3_on_emulated_qpu(qpu):
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 1000})
    solution = qpu.solve(problem, time_limit_s=30, seed=3)
    counts = score(problem, solution.result)["counts"]
    ideal = counts.get("000", 0) + counts.get("111", 0)
    assert ideal > 700
    assert ideal < 1000  # the device's noise model shows up as other outcomes
    details = solution.details
    assert details["backend"] == "fake_manila"
    assert len(details["layout"]) == 3 and all(0 <= q < 5 for q in details["layout"])
    assert details["transpiled_depth"] >= 3
    assert details["cost"] == {"usd": 0.0, "basis": "emulated device: no charge"}
    assert qpu.solve(problem, time_limit_s=30, seed=3).result == solution.result


def test_calibration_snapshot(qpu):
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 100})
    calibration = qpu.solve(problem, time_limit_s=30, seed=None).calibration
    assert calibration["backend"] == "fake_manila"
    assert calibration["num_qubits"] == 5
    assert calibration["last_update_date"]
    assert len(calibration["qubits"]) == 5
    assert all(q["t1_us"] > 0 and 0 < q["readout_error"] < 1 for q in calibration["qubits"])
    assert "cx" in calibration["gate_errors"]
    body = {k: v for k, v in calibration.items() if k != "sha256"}
    assert calibration["sha256"] == hashlib.sha256(canonical_json(body)).hexdigest()
    assert len(canonical_json(calibration)) < 8000


def test_qpu_capacity_refusals(qpu):
    wide = parse_problem({"kind": "circuit", "qasm": _wide(6), "shots": 10})
    assert qpu.can_solve(wide, LaneLimits()).reason == "capacity: 6 qubits > 5 on fake_manila"
    assert static_verdict("qpu", wide, LaneLimits(max_qubits=5)).reason == "capacity: 6 qubits > 5"


def test_qpu_depth_refusal():
    from solvers.qpu import EmulatedQpu, QpuCircuitSolver

    solver = QpuCircuitSolver(EmulatedQpu(max_depth=3))
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 10})
    with pytest.raises(SolverRefused, match=r"^capacity: depth \d+ > 3 after transpiling to fake_manila$"):
        solver.solve(problem, time_limit_s=30, seed=0)


def test_qpu_provider_failure():
    from solvers.qpu import QpuError

    solver = lane_solvers("qpu", failure_rate=1.0)[0]
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    with pytest.raises(QpuError, match="emulated provider failure on fake_manila"):
        solver.solve(problem, time_limit_s=30, seed=0)


def test_qpu_queue_delay_beyond_time_limit():
    solver = lane_solvers("qpu", queue_delay_s=5.0)[0]
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still queued after the 0.3 s time limit; cancelled"):
        solver.solve(problem, time_limit_s=0.3, seed=0)
    assert time.monotonic() - started < 2.0
    assert solver.adapter.poll("fake_manila-1") == "cancelled"


def test_qpu_queue_delay_within_time_limit():
    solver = lane_solvers("qpu", queue_delay_s=0.2)[0]
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    solution = solver.solve(problem, time_limit_s=10, seed=0)
    assert solution.details["queue_s"] >= 0.2
    assert sum(solution.result["counts"].values()) == 10


def test_adapter_job_lifecycle_errors():
    from solvers.qpu import EmulatedQpu, QpuError

    adapter = EmulatedQpu(queue_delay_s=5.0)
    with pytest.raises(QpuError, match="unknown job"):
        adapter.poll("nope")
    with pytest.raises(ValueError, match="failure_rate"):
        EmulatedQpu(failure_rate=1.5)
    assert adapter.cost_estimate(1000) == {"usd": 0.0, "basis": "emulated device: no charge"}


def test_adapter_prices_come_from_the_table():
    from solvers.qpu import EmulatedQpu, Price

    adapter = EmulatedQpu(price=Price(per_task_usd=0.3, per_shot_usd=0.00035, basis="test tariff"))
    assert adapter.cost_estimate(1000) == {"usd": 0.65, "basis": "test tariff"}


# --- registry ------------------------------------------------------------------------------------

def test_choose_solver_by_kind(heuristic):
    tsp = parse_problem({"kind": "tsp", "distances": [[0, 1], [1, 0]]})
    qubo = parse_problem({"kind": "qubo", "n": 2, "terms": []})
    solvers = list(heuristic.values())
    assert choose_solver("heuristic", tsp, LaneLimits(), solvers)[0] is heuristic["pyvrp"]
    assert choose_solver("heuristic", qubo, LaneLimits(), solvers)[0] is heuristic["qubo"]


def test_choose_solver_refusals(heuristic):
    tsp = parse_problem({"kind": "tsp", "distances": [[0, 1], [1, 0]]})
    cvrp = parse_problem({"kind": "cvrp", "distances": [[0, 1], [1, 0]], "demands": [0, 1],
                          "vehicle_capacity": 1, "num_vehicles": 1})
    solver, verdict = choose_solver("sim", cvrp, LaneLimits())
    assert solver is None
    assert verdict.reason == "unsupported: the sim lane does not solve 'cvrp'"
    big = parse_problem({"kind": "qubo", "n": 21, "terms": []})
    solver, verdict = choose_solver("heuristic", big, LaneLimits(), list(heuristic.values()))
    assert solver is None and verdict.reason == "capacity: n=21 > 20 for exact enumeration"
    assert choose_solver("gpu", tsp, LaneLimits())[1].reason.startswith("unsupported: unknown lane 'gpu'")
    with pytest.raises(ValueError, match="unknown lane"):
        lane_solvers("gpu")


@pytest.mark.parametrize("lane, data, limits, reason", [
    ("sim", {"kind": "cvrp", "distances": [[0, 1], [1, 0]], "demands": [0, 1], "vehicle_capacity": 1,
             "num_vehicles": 1}, LaneLimits(), "unsupported: the sim lane does not solve 'cvrp'"),
    ("sim", {"kind": "tsp", "distances": [[0 if i == j else 1 for j in range(6)] for i in range(6)]},
     LaneLimits(max_qubits=24), "capacity: 25 qubits > 20"),
    ("qpu", {"kind": "cvrp", "locations": [[0, 0], [1, 1]], "demands": [0, 1], "vehicle_capacity": 1,
             "num_vehicles": 1}, LaneLimits(), "unsupported: the qpu lane does not solve 'cvrp'"),
    ("heuristic", {"kind": "circuit", "qasm": BELL}, LaneLimits(),
     "unsupported: the heuristic lane does not solve 'circuit'"),
    ("sim", {"kind": "circuit", "qasm": _wide(25)}, LaneLimits(), "capacity: 25 qubits > 24"),
    ("heuristic", {"kind": "tsp", "locations": _points(30, 0)}, LaneLimits(max_nodes=20),
     "capacity: 30 nodes > 20"),
    ("heuristic", {"kind": "qubo", "n": 30, "terms": []}, LaneLimits(), ""),
    ("heuristic", {"kind": "assignment", "costs": [[1]], "weights": [1], "capacities": [1]},
     LaneLimits(), ""),
    ("sim", {"kind": "circuit", "qasm": BELL}, LaneLimits(), ""),
])
def test_static_verdict_agrees_with_choose_solver(lane, data, limits, reason):
    problem = parse_problem(data)
    assert static_verdict(lane, problem, limits).reason == reason
    assert choose_solver(lane, problem, limits)[1].reason == reason


def test_registry_and_can_solve_stay_light():
    code = (
        "import sys\n"
        "from solvers.base import LaneLimits\n"
        "from solvers.problems import parse_problem\n"
        "from solvers.registry import lane_solvers, static_verdict\n"
        "p = parse_problem({'kind': 'tsp', 'distances': [[0, 1], [1, 0]]})\n"
        "assert static_verdict('heuristic', p, LaneLimits()).ok\n"
        "assert all(s.can_solve(p, LaneLimits()).ok for s in lane_solvers('heuristic')[:1])\n"
        "heavy = [m for m in ('qiskit', 'qiskit_aer', 'qiskit_ibm_runtime', 'pyvrp', 'pulp')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_lanes():
    assert LANES == ("qpu", "sim", "heuristic")
    assert {s.lane for s in lane_solvers("heuristic")} == {"heuristic"}
