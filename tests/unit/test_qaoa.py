"""QAOA on the sim lane: encodings, decoding and repair, optimum-finding rates, reproducibility, refusals.

The optimum-finding rates are printed (run with ``-s`` to see them). At 8–10 variables 1024 shots cover a
good share of the 2**n states, so the rates alone would flatter any sampler; the tests therefore also
check that QAOA concentrated the state: the ground-state probability is above the uniform one, and
the expected energy below the uniform mean.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from solvers.base import LaneLimits, SolverRefused
from solvers.capability import QAOA_EVALUATIONS
from solvers.encodings import (
    AssignmentEncoding,
    TspEncoding,
    bits_to_index,
    energy_vector,
    from_ising,
    indices_to_bits,
    qubo_from_terms,
    to_ising,
)
from solvers.heuristic import ExactQubo
from solvers.objective import score
from solvers.problems import parse_problem
from solvers.qaoa import QaoaSolver, circuit_depth, qaoa_circuit
from solvers.registry import LANE_KINDS, choose_solver, lane_solvers, static_verdict

ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(10)


@pytest.fixture(scope="module")
def qaoa() -> QaoaSolver:
    return QaoaSolver()


def _random_qubo(seed: int, n: int | None = None) -> object:
    rng = random.Random(seed)
    n = n or 8 + seed % 3
    terms = [[i, j, rng.uniform(-1, 1)] for i in range(n) for j in range(i, n) if rng.random() < 0.5]
    return parse_problem({"kind": "qubo", "n": n, "terms": terms})


def _tsp(seed: int, n: int = 4) -> object:
    rng = random.Random(100 + seed)
    return parse_problem({"kind": "tsp", "locations": [[rng.uniform(0, 100), rng.uniform(0, 100)]
                                                       for _ in range(n)]})


def _qubits(problem) -> int:
    return problem.n if problem.kind == "qubo" else (problem.size - 1) ** 2


def _brute_force_tour(problem) -> float:
    d = problem.distance_matrix()
    return min(sum(d[a][b] for a, b in zip((0, *p), (*p, 0))) for p in itertools.permutations(range(1, problem.size)))


# --- encodings -----------------------------------------------------------------------------------

def test_energy_vector_is_little_endian_and_folds_terms():
    rng = np.random.default_rng(3)
    n = 6
    terms = [(int(i), int(j), float(rng.normal())) for i in range(n) for j in range(n) if rng.random() < 0.5]
    energies = energy_vector(qubo_from_terms(n, terms))
    problem = parse_problem({"kind": "qubo", "n": n, "terms": [list(t) for t in terms]})
    for k in range(2**n):
        bits = [(k >> i) & 1 for i in range(n)]
        assert energies[k] == pytest.approx(score(problem, {"bits": bits})["energy"], abs=1e-9)
        assert bits_to_index(indices_to_bits([k], n)[0]) == k
    assert np.allclose(energy_vector(terms, n, chunk_bits=2), energies)


def test_ising_round_trip():
    rng = np.random.default_rng(4)
    n = 5
    qubo = qubo_from_terms(n, [(i, j, float(rng.normal())) for i in range(n) for j in range(i, n)], offset=0.7)
    h, J, c = to_ising(qubo)
    spins = 1.0 - 2.0 * indices_to_bits(np.arange(2**n), n)
    ising = c + spins @ h + np.einsum("ki,ij,kj->k", spins, J, spins)
    assert np.allclose(ising, energy_vector(qubo))
    assert np.allclose(energy_vector(from_ising(h, J, c)), energy_vector(qubo))


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_tsp_qubo_minimum_is_the_best_tour(n):
    problem = _tsp(n, n)
    encoding = TspEncoding(problem.distance_matrix())
    energies = energy_vector(encoding.qubo)
    assert encoding.qubo.n == (n - 1) ** 2
    ground = encoding.decode(indices_to_bits([int(np.argmin(energies))], encoding.qubo.n)[0])
    assert ground.raw_feasible
    assert ground.cost == pytest.approx(_brute_force_tour(problem))
    assert energies.min() == pytest.approx(ground.cost)  # penalty constants sit in the offset


def test_decode_and_repair_always_give_valid_tours():
    rng = np.random.default_rng(5)
    for n in range(2, 7):
        problem = _tsp(n, n)
        encoding = TspEncoding(problem.distance_matrix())
        m = encoding.qubo.n
        rows = [np.zeros(m, dtype=int), np.ones(m, dtype=int), *rng.integers(0, 2, size=(60, m))]
        rows += [(rng.random(m) < 0.15).astype(int) for _ in range(40)]
        for bits in rows:
            decoded = encoding.decode(bits)
            scored = score(problem, decoded.result)  # raises on a malformed tour
            assert decoded.result["tour"][0] == 0 and decoded.feasible
            assert decoded.cost == pytest.approx(scored["cost"])
            grid = bits.reshape(n - 1, n - 1)
            assert decoded.raw_feasible == bool((grid.sum(0) == 1).all() and (grid.sum(1) == 1).all())


def test_decode_and_repair_give_valid_assignments():
    rng = random.Random(6)
    for _ in range(40):
        loads, trucks = rng.randint(1, 4), rng.randint(1, 4)
        weights = [rng.randint(1, 5) for _ in range(loads)]
        capacities = [rng.randint(1, 10) for _ in range(trucks)]
        roomy = rng.random() < 0.5
        if roomy:  # one truck can take everything: repair must then always succeed
            capacities[rng.randrange(trucks)] = sum(weights)
        problem = parse_problem({"kind": "assignment", "weights": weights, "capacities": capacities,
                                 "costs": [[rng.randint(0, 9) for _ in range(trucks)] for _ in range(loads)]})
        encoding = AssignmentEncoding(problem.costs, problem.weights, problem.capacities)
        for _ in range(25):
            bits = np.array([rng.randint(0, 1) for _ in range(loads * trucks)])
            decoded = encoding.decode(bits)
            scored = score(problem, decoded.result)
            assert decoded.feasible == scored["feasible"]
            assert decoded.cost == pytest.approx(scored["cost"])
            assert decoded.feasible or not roomy
            if decoded.raw_feasible:
                assert decoded.feasible and all(bits.reshape(loads, trucks).sum(axis=1) == 1)


def test_circuit_bit_order_matches_an_independent_expectation(qaoa):
    from qiskit.quantum_info import SparsePauliOp, Statevector

    problem = _random_qubo(2, 6)
    qubo = qubo_from_terms(problem.n, problem.terms)
    h, J, c = to_ising(qubo)
    circuit, gammas, betas = qaoa_circuit(h, J, 2)
    angles = {gammas[0]: 0.3, gammas[1]: 0.5, betas[0]: -0.4, betas[1]: 0.2}
    state = Statevector(circuit.assign_parameters(angles))
    terms = [("Z", [i], h[i]) for i in range(qubo.n)]
    terms += [("ZZ", [i, j], J[i, j]) for i, j in zip(*np.nonzero(J))]
    expected = c + state.expectation_value(SparsePauliOp.from_sparse_list(terms, qubo.n)).real
    assert float(state.probabilities() @ energy_vector(qubo)) == pytest.approx(expected)
    assert circuit.depth() == circuit_depth(qubo.interactions(), qubo.n, 2)


# --- solving -------------------------------------------------------------------------------------

def test_qaoa_finds_the_qubo_optimum_in_most_seeds(qaoa):
    exact = ExactQubo()
    found, amplified = 0, 0
    for seed in SEEDS:
        problem = _random_qubo(seed)
        optimum = score(problem, exact.solve(problem, time_limit_s=5, seed=None).result)["energy"]
        solution = qaoa.solve(problem, time_limit_s=10, seed=seed)
        found += score(problem, solution.result)["energy"] <= optimum + 1e-9
        q = solution.details["quantum"]
        amplified += q["ground_state_probability"] > 2 * q["uniform_ground_state_probability"]
        assert q["expected_energy"] < q["uniform_mean_energy"]
    print(f"\nQAOA qubo optimum found in {found}/{len(SEEDS)} seeds (8-10 variables, 1024 shots); "
          f"ground state amplified >2x in {amplified}/{len(SEEDS)}")
    assert found >= 7
    assert amplified >= 7


def test_qaoa_with_few_shots_still_finds_the_qubo_optimum(qaoa):
    """64 shots over 256–1024 states: a uniform sampler would hit the optimum in ~6–22% of runs."""
    few = QaoaSolver(shots=64)
    exact = ExactQubo()
    found = 0
    for seed in SEEDS:
        problem = _random_qubo(seed)
        optimum = score(problem, exact.solve(problem, time_limit_s=5, seed=None).result)["energy"]
        found += score(problem, few.solve(problem, time_limit_s=10, seed=seed).result)["energy"] <= optimum + 1e-9
    print(f"\nQAOA qubo optimum found in {found}/{len(SEEDS)} seeds with 64 shots")
    assert found >= 6


def test_qaoa_four_node_tsp_matches_brute_force(qaoa):
    found = 0
    for seed in SEEDS:
        problem = _tsp(seed)
        solution = qaoa.solve(problem, time_limit_s=10, seed=seed)
        assert solution.details["qubits"] == 9
        found += score(problem, solution.result)["cost"] <= _brute_force_tour(problem) + 1e-9
    print(f"\nQAOA 4-node tsp optimum found in {found}/{len(SEEDS)} seeds (9 qubits)")
    assert found > len(SEEDS) // 2


def test_small_assignment(qaoa):
    problem = parse_problem({"kind": "assignment", "costs": [[1, 4, 5], [4, 1, 5], [2, 3, 1]],
                             "weights": [2, 2, 3], "capacities": [3, 3, 4]})
    solution = qaoa.solve(problem, time_limit_s=10, seed=1)
    scored = score(problem, solution.result)
    assert scored["feasible"] and scored["cost"] == 3.0
    assert solution.details["qubits"] == 9


def test_same_seed_same_answer(qaoa):
    for problem in (_random_qubo(3), _tsp(3)):
        first = qaoa.solve(problem, time_limit_s=10, seed=42)
        again = qaoa.solve(problem, time_limit_s=10, seed=42)
        assert again.result == first.result
        assert again.details["quantum"] == first.details["quantum"]
    problem = _random_qubo(4)
    few = QaoaSolver(shots=64)
    means = {few.solve(problem, time_limit_s=10, seed=s).details["quantum"]["mean_raw_energy"] for s in (1, 2, 3)}
    assert len(means) > 1  # the seed does reach the sampler


def test_quantum_stats_are_sensible(qaoa):
    for problem in (_random_qubo(5), _tsp(5)):
        details = qaoa.solve(problem, time_limit_s=10, seed=7).details
        q = details["quantum"]
        assert {"shots", "best_raw_energy", "mean_raw_energy", "feasible_share", "optimizer_evaluations",
                "reps"} <= set(q)
        assert q["shots"] == 1024 and q["reps"] == 2
        assert 0.0 <= q["feasible_share"] <= 1.0
        assert q["best_raw_energy"] <= q["mean_raw_energy"]
        assert 0 < q["optimizer_evaluations"] <= 120
        assert details["seed"] == 7 and details["qubits"] == _qubits(problem)
        assert details["runtime_s"] > 0
    assert qaoa.solve(_random_qubo(5), time_limit_s=10, seed=7).details["quantum"]["feasible_share"] == 1.0


def test_a_limit_too_short_for_one_evaluation_is_a_timeout(qaoa):
    # 1 ms cannot hold the setup, let alone one 16-qubit evaluation, however idle or loaded the machine is
    with pytest.raises(TimeoutError, match="not one energy evaluation fitted"):
        qaoa.solve(_tsp(1, 5), time_limit_s=0.001, seed=0)


def test_a_time_limit_cuts_the_search_short(qaoa):
    """Counts and CPU seconds, not wall seconds: on a loaded machine the setup alone took 0.8 s of the
    0.5 s limit this test used to give. A 20-variable QUBO costs ~0.25 s per evaluation, so the 60
    evaluations planned without a limit are ~15 s of CPU, while 3 s plan 8, and a run that honours its
    limit burns at most 3 s on each of the 2 cores (the statevector simulation is threaded): the CPU bound
    stays 2.5x below an unlimited run however slow the wall clock is. 3 s leave room for the setup unless
    the machine is swamped; then the solver must give up at its deadline, within the same CPU bound."""
    qaoa.solve(_random_qubo(0), time_limit_s=10, seed=0)  # warm: qiskit and Aer loaded, as on a worker
    rng = random.Random(5)
    problem = parse_problem({"kind": "qubo", "n": 20, "terms": [[i, j, rng.uniform(-1, 1)] for i in range(20)
                                                                for j in range(i, 20) if rng.random() < 0.3]})
    limit_s = 3.0
    reps, planned = qaoa._plan(20, limit_s)
    assert (reps, qaoa._plan(20, None)) == (1, (1, QAOA_EVALUATIONS[1])) and planned <= QAOA_EVALUATIONS[1] // 5
    wall, started = time.perf_counter(), time.process_time()
    try:
        solution = qaoa.solve(problem, time_limit_s=limit_s, seed=0)
    except TimeoutError as exc:  # the setup alone outlasted 3 s (seen with the 2 cores 2.5x oversubscribed)
        assert "not one energy evaluation fitted" in str(exc)
        assert time.perf_counter() - wall >= limit_s - 0.5  # given up at its deadline, not before
        solution = None
    cpu_s = time.process_time() - started
    assert cpu_s < 2 * limit_s, f"{cpu_s:.2f} s of CPU for a {limit_s} s limit"
    if solution is not None:
        quantum = solution.details["quantum"]
        assert quantum["planned_evaluations"] == planned and 1 <= quantum["optimizer_evaluations"] <= planned
        assert quantum["stopped_by"] in ("time", "budget")
        assert "energy" in score(problem, solution.result)  # a valid answer from the evaluations it had


def test_estimate(qaoa):
    estimate = qaoa.estimate(_tsp(0))
    assert estimate["qubits"] == 9 and estimate["reps"] == 2 and estimate["shots"] == 1024
    assert estimate["depth"] > 2 and 0 < estimate["expected_seconds"] < 5
    big = qaoa.estimate(parse_problem({"kind": "qubo", "n": 20, "terms": [[0, 1, 1.0]]}))
    assert big["reps"] == 1 and big["expected_seconds"] > estimate["expected_seconds"]


# --- capability and registry ---------------------------------------------------------------------

@pytest.mark.parametrize("data, limits, reason", [
    ({"kind": "qubo", "n": 30, "terms": [[0, 1, 1.0]]}, LaneLimits(), "capacity: 30 qubits > 20"),
    ({"kind": "qubo", "n": 30, "terms": []}, LaneLimits(max_qubits=24), "capacity: 30 qubits > 20"),
    ({"kind": "tsp", "distances": [[0 if i == j else 1 for j in range(6)] for i in range(6)]}, LaneLimits(),
     "capacity: 25 qubits > 20"),
    ({"kind": "tsp", "distances": [[0 if i == j else 1 for j in range(5)] for i in range(5)]},
     LaneLimits(max_qubits=12), "capacity: 16 qubits > 12"),
    ({"kind": "assignment", "costs": [[1] * 5] * 5, "weights": [1] * 5, "capacities": [5] * 5}, LaneLimits(),
     "capacity: 25 qubits > 20"),
    ({"kind": "qubo", "n": 4, "terms": []}, LaneLimits(max_shots=100), "capacity: 1024 shots > 100"),
    ({"kind": "tsp", "distances": [[0, 1], [1, 0]]}, LaneLimits(max_qubits=24), ""),
    ({"kind": "assignment", "costs": [[1, 2]], "weights": [1], "capacities": [1, 1]}, LaneLimits(), ""),
])
def test_capacity_verdicts_agree(qaoa, data, limits, reason):
    problem = parse_problem(data)
    assert qaoa.can_solve(problem, limits).reason == reason
    assert static_verdict("sim", problem, limits).reason == reason
    solver, verdict = choose_solver("sim", problem, limits)
    assert verdict.reason == reason
    assert (solver is None) == bool(reason)
    if reason.endswith("> 20"):
        with pytest.raises(SolverRefused, match=reason):
            qaoa.solve(problem, time_limit_s=1, seed=0)


def test_expected_time_refusal_when_the_qubit_cap_is_raised():
    wide = QaoaSolver(default_max_qubits=24)
    limits = LaneLimits(max_qubits=24)
    assert wide.can_solve(parse_problem({"kind": "qubo", "n": 22, "terms": []}), limits).ok
    reason = wide.can_solve(parse_problem({"kind": "qubo", "n": 23, "terms": []}), limits).reason
    assert reason.startswith("capacity: QAOA on 23 qubits needs ~") and reason.endswith(" s > 60 s")


def test_sim_lane_offers_aer_and_qaoa():
    assert [s.id for s in lane_solvers("sim")] == ["aer", "qaoa-aer"]
    assert LANE_KINDS["sim"] == {"circuit", "qubo", "tsp", "assignment"}
    assert all(s.lane == "sim" for s in lane_solvers("sim"))
    cvrp = parse_problem({"kind": "cvrp", "locations": [[0, 0], [1, 0]], "demands": [0, 1],
                          "vehicle_capacity": 1, "num_vehicles": 1})
    assert static_verdict("sim", cvrp, LaneLimits()).reason == "unsupported: the sim lane does not solve 'cvrp'"
    assert choose_solver("sim", _tsp(0), LaneLimits(max_qubits=24))[0].id == "qaoa-aer"


def test_planning_for_qaoa_stays_light():
    code = (
        "import sys\n"
        "from solvers.base import LaneLimits\n"
        "from solvers.problems import parse_problem\n"
        "from solvers.registry import lane_solvers, static_verdict\n"
        "p = parse_problem({'kind': 'tsp', 'distances': [[0, 1, 2], [1, 0, 1], [2, 1, 0]]})\n"
        "assert static_verdict('sim', p, LaneLimits(max_qubits=24)).ok\n"
        "assert lane_solvers('sim')[1].can_solve(p, LaneLimits()).ok\n"
        "heavy = [m for m in ('qiskit', 'qiskit_aer', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
