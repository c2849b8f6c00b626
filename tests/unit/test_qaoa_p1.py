"""The closed-form one-layer QAOA energy against the statevector of the circuit the qpu lane runs."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from solvers.encodings import encode, energy_vector, ising_scale, to_ising
from solvers.problems import parse_problem
from solvers.qaoa import QaoaSolver, qaoa_circuit
from solvers.qaoa_p1 import ClosedFormExpectation, optimise_angles_closed_form

ANGLES = [(0.0, 0.0), (0.31, 0.2), (0.7, -0.5), (1.1, 1.3), (-0.4, math.pi / 8), (2.9, -2.2)]


def statevector_energy(h: np.ndarray, J: np.ndarray, offset: float, scale: float, gamma: float,
                       beta: float, energies: np.ndarray) -> float:
    circuit, gammas, betas = qaoa_circuit(h, J, 1, scale)
    state = Statevector(circuit.assign_parameters({gammas[0]: gamma, betas[0]: beta}))
    return float(np.abs(state.data) ** 2 @ energies)


def random_ising(n: int, density: float, seed: int, fields: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h = rng.normal(size=n) * (1.0 if fields else 0.0)
    J = np.triu(rng.normal(size=(n, n)) * (rng.random((n, n)) < density), 1)
    return h, J


CASES = [
    ("dense with fields", *random_ising(7, 1.0, 1)),
    ("sparse with fields", *random_ising(9, 0.3, 2)),
    ("no fields", *random_ising(6, 0.8, 3, fields=False)),
    ("fields only", np.array([0.5, -1.5, 2.0]), np.zeros((3, 3))),
    ("one coupling", np.zeros(2), np.array([[0.0, -1.25], [0.0, 0.0]])),
    ("integer weights", np.array([1.0, -2.0, 0.0, 3.0]), np.triu(np.full((4, 4), 2.0), 1)),
]


@pytest.mark.parametrize("name, h, J", CASES, ids=[c[0] for c in CASES])
def test_the_closed_form_equals_the_statevector_energy(name: str, h: np.ndarray, J: np.ndarray) -> None:
    from solvers.encodings import from_ising

    offset = 0.75
    energies = energy_vector(from_ising(h, J, offset))
    for scale in (1.0, ising_scale(h, J)):
        expectation = ClosedFormExpectation(h, J, offset, scale)
        for gamma, beta in ANGLES:
            exact = statevector_energy(h, J, offset, scale, gamma, beta, energies)
            assert expectation.energy(gamma, beta) == pytest.approx(exact, abs=1e-9 * (1 + abs(exact)))


@pytest.mark.parametrize("data", [
    {"kind": "qubo", "n": 5, "terms": [[0, 0, -3], [0, 1, 4], [1, 2, -2], [2, 4, 5], [3, 3, 1], [3, 4, -6]]},
    {"kind": "tsp", "locations": [[0, 0], [10, 0], [10, 10], [0, 12]]},
    {"kind": "assignment", "costs": [[1, 4], [3, 1], [2, 2]], "weights": [1, 2, 1], "capacities": [3, 2]},
], ids=["qubo", "tsp", "assignment"])
def test_the_closed_form_equals_the_statevector_on_routing_encodings(data: dict) -> None:
    qubo = encode(parse_problem(data)).qubo
    h, J, offset = to_ising(qubo)
    scale = ising_scale(h, J)
    energies = energy_vector(qubo)
    expectation = ClosedFormExpectation(h, J, offset, scale)
    assert expectation.energy(0.0, 0.0) == pytest.approx(energies.mean())
    for gamma, beta in ANGLES[1:]:
        exact = statevector_energy(h, J, offset, scale, gamma, beta, energies)
        assert expectation.energy(gamma, beta) == pytest.approx(exact, rel=1e-9, abs=1e-9)


def test_the_closed_form_search_finds_the_statevector_searchs_energy() -> None:
    """Same search, same objective: the optimum agrees with the one-layer statevector search."""
    problem = parse_problem({"kind": "tsp", "locations": [[0, 0], [10, 0], [10, 10], [0, 12]]})
    encoding = encode(problem)
    closed = optimise_angles_closed_form(encoding, 60, time.perf_counter() + 60)
    statevector = QaoaSolver(reps=1, max_evaluations=60).optimise_angles(encoding, 60, time.perf_counter() + 60)
    assert closed.evaluations <= 60 and statevector.evaluations <= 60
    assert closed.expected_energy == pytest.approx(statevector.expected_energy, rel=1e-6)
    assert closed.expected_energy < closed.uniform_mean_energy == pytest.approx(statevector.uniform_mean_energy)
    assert closed.details()["gammas"] == pytest.approx(statevector.details()["gammas"], abs=1e-4)
    assert "ground_state_probability" not in closed.details()


def test_the_search_runs_far_past_the_statevector() -> None:
    """60 variables (2**60 states): the search still optimises, in well under a second per evaluation."""
    n = 60
    terms = [[i, (i + 1) % n, 2.0] for i in range(n)] + [[i, i, -1.0] for i in range(0, n, 3)]
    encoding = encode(parse_problem({"kind": "qubo", "n": n, "terms": terms}))
    started = time.process_time()
    search = optimise_angles_closed_form(encoding, 60, time.perf_counter() + 120)
    cpu = time.process_time() - started
    assert search.evaluations == 60 and search.stopped_by == "budget"
    assert search.expected_energy < search.uniform_mean_energy - 5.0
    assert cpu < 10.0


@pytest.mark.parametrize("size", [1e-200, 1.0, 1e150, 1e200, 1e307])
def test_the_hamiltonians_scale_is_finite_for_every_admitted_weight(size: float) -> None:
    """Squaring a 1e200 weight overflowed to inf (a RuntimeWarning on the qpu lane), and angles scaled by
    an infinite scale are all zero: the search learned nothing and said nothing."""
    import warnings

    h, J = np.array([size, -size, 0.0]), np.array([[0.0, size, 0.0], [0.0, 0.0, -size / 2], [0.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scale = ising_scale(h, J)
    assert math.isfinite(scale) and scale == pytest.approx(size * math.sqrt(3.25), rel=1e-12)
    assert ising_scale(np.zeros(2), np.zeros((2, 2))) == 0.0
