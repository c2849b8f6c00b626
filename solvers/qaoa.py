"""The sim lane's optimiser: QAOA on an ideal Aer statevector for small qubo, tsp and assignment problems.

One evaluation binds the angles into the transpiled circuit, lets Aer compute the statevector, and takes
its probabilities' dot product with the precomputed energies of all ``2**n`` bit vectors
(`solvers.encodings.energy_vector`). That is exact, needs no observable algebra, and is several times
faster than an Estimator. The circuit carries no measurements: shots are drawn afterwards from the final
probabilities with a seeded numpy generator, so a seed reproduces the answer.

Run to run, everything is deterministic except where the clock stops the optimiser: the number of
evaluations is planned from the time limit and the measured table in `solvers.capability`, and the clock
is only a safety net on a machine slower than the table.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from solvers.aer import simulator_seed
from solvers.base import LaneLimits, NoFeasibleSolution, Solution, SolverRefused, Verdict
from solvers.capability import (
    QAOA_DEFAULT_MAX_QUBITS,
    QAOA_DEFAULT_SHOTS,
    QAOA_EVALUATIONS,
    check_qaoa,
    package_version,
    qaoa_expected_seconds,
    qaoa_qubits,
    qaoa_reps,
    qaoa_seconds_per_evaluation,
    qaoa_setup_seconds,
)
from solvers.encodings import Decoded, Encoding, encode, energy_vector, indices_to_bits, ising_scale, to_ising

# Share of the time limit the optimiser may plan for; the rest covers setup, sampling and decoding.
OPTIMISE_SHARE = 0.8
# Below this many planned evaluations a second layer cannot be optimised: fall back to one.
MIN_EVALUATIONS_TWO_LAYERS = 40
# Starting grid for one layer, in units of the cost Hamiltonian divided by its standard deviation
# (`solvers.encodings.ising_scale`). Energies are real, so (γ, β) and (-γ, -β) give the same energy and
# γ > 0 suffices; β repeats every π.
GRID_GAMMAS = (0.1, 0.25, 0.4, 0.6, 0.85, 1.2)
GRID_BETAS = (-3 * math.pi / 8, -math.pi / 4, -math.pi / 8, math.pi / 8, math.pi / 4, 3 * math.pi / 8)
SMALL_GRID_GAMMAS = (0.25, 0.6)
SMALL_GRID_BETAS = (-math.pi / 8, math.pi / 8)
COBYLA_RHOBEG = 0.15


class _Stop(Exception):
    """Raised inside the objective to end the optimisation: budget spent or deadline near."""


Expectation = Callable[[np.ndarray], "tuple[float, np.ndarray | None]"]


@dataclass
class StatevectorExpectation:
    """The energy of angles ``[γ_1..γ_p, β_1..β_p]`` on the transpiled QAOA circuit: Aer computes the
    statevector, whose probabilities are dotted with the precomputed energies of all ``2**n`` states."""

    simulator: Any
    circuit: Any
    gammas: list[Any]
    betas: list[Any]
    energies: np.ndarray

    def __call__(self, angles: np.ndarray) -> tuple[float, np.ndarray | None]:
        binding = {param: float(value) for param, value in zip(self.gammas + self.betas, angles)}
        bound = self.circuit.assign_parameters(binding, inplace=False)
        result = self.simulator.run(bound).result()
        if not result.success:
            raise RuntimeError(f"Aer simulation failed: {result.status}")
        state = np.asarray(result.get_statevector(0))
        probabilities = state.real ** 2 + state.imag ** 2
        return float(probabilities @ self.energies), probabilities


@dataclass
class Evaluator:
    """The search's objective: an expectation (`StatevectorExpectation` or the closed form of
    `solvers.qaoa_p1`) behind an evaluation budget, a deadline and a replayed stop, keeping the best."""

    expectation: Expectation
    mean: float
    scale: float
    budget: int
    deadline: float
    seconds: float
    stop_after: int | None = None
    evaluations: int = 0
    stopped_by: str = "budget"
    best_energy: float = math.inf
    best_angles: np.ndarray | None = None
    best_probabilities: np.ndarray | None = None

    def __call__(self, angles: np.ndarray) -> float:
        """The energy in units of the scaled Hamiltonian (what the optimiser sees)."""
        if self.evaluations >= self.budget:
            raise _Stop("budget")
        if self.stop_after is not None and self.evaluations >= self.stop_after:
            self.stopped_by = "replayed stop"
            raise _Stop("replayed stop")
        if time.perf_counter() + self.seconds > self.deadline:
            self.stopped_by = "time"
            raise _Stop("time")
        started = time.perf_counter()
        energy, probabilities = self.expectation(np.asarray(angles, dtype=np.float64))
        self.seconds = max(self.seconds if self.evaluations else 0.0, time.perf_counter() - started)
        self.evaluations += 1
        if energy < self.best_energy:
            self.best_energy = energy
            self.best_angles = np.array(angles, dtype=np.float64)
            self.best_probabilities = probabilities
        return (energy - self.mean) / self.scale


@dataclass
class AngleSearch:
    """What the noiseless angle search found: the angles, their noiseless energy, and how the search went
    (evaluations planned and used, stages, whether the clock stopped it).

    ``energies`` (all ``2**n`` energies) and ``probabilities`` (the state at the best angles) exist only
    when the search ran on the statevector; the closed-form search (`solvers.qaoa_p1`) has neither.
    """

    h: np.ndarray
    J: np.ndarray
    scale: float
    reps: int
    angles: np.ndarray
    expected_energy: float
    uniform_mean_energy: float
    evaluations: int
    budget: int
    stages: list[dict[str, Any]]
    stopped_by: str
    method: str
    energies: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    optimizer: str = "grid+COBYLA"

    @property
    def gammas(self) -> list[float]:
        return [round(float(g), 6) for g in self.angles[:self.reps]]

    @property
    def betas(self) -> list[float]:
        return [round(float(b), 6) for b in self.angles[self.reps:]]

    def details(self) -> dict[str, Any]:
        """The search's part of a result's ``quantum`` details (what a replay needs: the evaluations)."""
        ground = (_ground_state(self.probabilities, self.energies)
                  if self.probabilities is not None and self.energies is not None else {})
        return {
            "optimizer_evaluations": self.evaluations,
            "planned_evaluations": self.budget,
            "reps": self.reps,
            "optimizer": self.optimizer,
            "stages": self.stages,
            "stopped_by": self.stopped_by,
            "expected_energy": self.expected_energy,
            "uniform_mean_energy": self.uniform_mean_energy,
            **ground,
            "hamiltonian_scale": self.scale,
            "gammas": self.gammas,
            "betas": self.betas,
        }


class QaoaSolver:
    """QAOA with a grid start, COBYLA, and (for small problems) a second layer grown from the first.

    The optimiser sees the cost Hamiltonian divided by its standard deviation over all bit vectors, so
    the same angle grid suits every problem's units. With two layers the circuit always has both, and
    the one-layer stage sets the second layer's angles to zero (which is exactly one layer); the second
    stage starts from the one-layer optimum repeated in both layers (the INTERP rule from p = 1 to 2).
    """

    lane = "sim"
    id = "qaoa-aer"
    kinds = frozenset({"qubo", "tsp", "assignment"})

    def __init__(self, *, shots: int = QAOA_DEFAULT_SHOTS, reps: int | None = None,
                 max_evaluations: int | None = None, default_max_qubits: int = QAOA_DEFAULT_MAX_QUBITS,
                 stop_after_evaluations: int | None = None) -> None:
        """``max_evaluations`` and ``reps`` fix the plan (otherwise it follows the time limit);
        ``stop_after_evaluations`` ends the search after that many evaluations, as a clock that cut the
        original run did: with both, a replay repeats a run's evaluations one for one."""
        self.version = f"qiskit-{package_version('qiskit')}+qiskit-aer-{package_version('qiskit-aer')}"
        self.shots = shots
        self.reps = reps
        self.max_evaluations = max_evaluations
        self.default_max_qubits = default_max_qubits
        self.stop_after_evaluations = stop_after_evaluations
        self._simulator: Any = None

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_qaoa(problem, limits, default_max_qubits=self.default_max_qubits, shots=self.shots)

    def estimate(self, problem: Any, time_limit_s: float | None = None) -> dict[str, Any]:
        """Qubits, layers, circuit depth (before transpiling), shots, planned evaluations and seconds.

        Without a time limit the planned evaluations are the default ones; with one, what fits in it.
        """
        qubits = qaoa_qubits(problem)
        reps, evaluations = self._plan(qubits, time_limit_s)
        return {
            "qubits": qubits,
            "reps": reps,
            "depth": circuit_depth(encode(problem).qubo.interactions(), qubits, reps),
            "shots": self.shots,
            "evaluations": evaluations,
            "seconds_per_evaluation": round(qaoa_seconds_per_evaluation(qubits, reps), 6),
            "expected_seconds": round(qaoa_expected_seconds(qubits, reps, evaluations), 3),
        }

    def _plan(self, qubits: int, time_limit_s: float | None) -> tuple[int, int]:
        """Layers and evaluations for a time limit: a deterministic function of its arguments."""
        reps = self.reps or qaoa_reps(qubits)
        while True:
            wanted = self.max_evaluations or QAOA_EVALUATIONS.get(reps, QAOA_EVALUATIONS[1] * reps)
            if time_limit_s is None:
                return reps, wanted
            room = OPTIMISE_SHARE * time_limit_s - qaoa_setup_seconds(qubits)
            fits = max(1, int(room / qaoa_seconds_per_evaluation(qubits, reps)))
            if fits >= MIN_EVALUATIONS_TWO_LAYERS or reps == 1 or self.reps is not None:
                return reps, min(wanted, fits)
            reps -= 1

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        started = time.perf_counter()
        verdict = self.can_solve(problem, LaneLimits())
        if not verdict.ok:
            raise SolverRefused(verdict.reason)
        encoding = encode(problem)
        search = self.optimise_angles(encoding, time_limit_s, started + time_limit_s - self._reserve(encoding.qubo.n))
        sampler_seed = simulator_seed(seed)
        samples = _sample(search.probabilities, self.shots, sampler_seed)
        best, stats = decode_samples(encoding, samples, search.energies)
        if not best.feasible:
            raise NoFeasibleSolution(f"infeasible: none of {self.shots} QAOA samples could be repaired into "
                                     "an assignment within every truck's capacity")
        details = {
            "seed": seed,
            "seed_sampler": sampler_seed,
            "qubits": encoding.qubo.n,
            "encoding": encoding.kind,
            "penalty": encoding.penalty,
            "repaired": not best.raw_feasible,
            "quantum": {"shots": self.shots, **stats, **search.details()},
            "runtime_s": round(time.perf_counter() - started, 4),
        }
        return Solution(result=best.result, details=details)

    def optimise_angles(self, encoding: Encoding, time_limit_s: float, deadline: float) -> AngleSearch:
        """The QAOA angles for ``encoding`` with the lowest noiseless energy found by `search_angles` before
        ``deadline`` (``time.perf_counter``), within the evaluations planned for ``time_limit_s``.

        Raises TimeoutError when not one evaluation fits. Shared with the qpu lane, which samples the
        device at these angles instead of the statevector.
        """
        qubo = encoding.qubo
        n = qubo.n
        reps, budget = self._plan(n, time_limit_s)
        energies = energy_vector(qubo)
        h, J, _ = to_ising(qubo)
        scale = ising_scale(h, J)
        evaluator = Evaluator(self._expectation(h, J, scale, reps, energies), float(energies.mean()),
                              scale or 1.0, budget, deadline, qaoa_seconds_per_evaluation(n, reps),
                              self.stop_after_evaluations)
        stages = search_angles(evaluator, reps, scale)
        if evaluator.best_probabilities is None or evaluator.best_angles is None:
            raise TimeoutError(f"QAOA on {n} qubits: not one energy evaluation fitted in the "
                               f"{time_limit_s:g} s time limit")
        return AngleSearch(h=h, J=J, scale=scale, reps=reps, angles=evaluator.best_angles,
                           expected_energy=evaluator.best_energy, uniform_mean_energy=float(energies.mean()),
                           evaluations=evaluator.evaluations, budget=budget, stages=stages,
                           stopped_by=evaluator.stopped_by, method="noiseless statevector search",
                           energies=energies, probabilities=evaluator.best_probabilities)

    def _reserve(self, qubits: int) -> float:
        """Seconds kept back from the optimiser for sampling and decoding (measured: decoding 1024
        distinct 16-qubit tsp samples takes ~0.03 s, drawing 1024 shots from 2**20 states ~0.01 s)."""
        return 0.02 + 5e-5 * self.shots + 1e-8 * 2.0 ** qubits

    def _expectation(self, h: np.ndarray, J: np.ndarray, scale: float, reps: int,
                     energies: np.ndarray) -> StatevectorExpectation:
        from qiskit import transpile

        simulator = self._backend()
        circuit, gammas, betas = qaoa_circuit(h, J, reps, scale)
        circuit.save_statevector()
        circuit = transpile(circuit, simulator, optimization_level=1, seed_transpiler=1)
        return StatevectorExpectation(simulator, circuit, gammas, betas, energies)

    def _backend(self) -> Any:
        if self._simulator is None:
            from qiskit_aer import AerSimulator

            self._simulator = AerSimulator(method="statevector")
        return self._simulator


def search_angles(evaluator: Evaluator, reps: int, scale: float) -> list[dict[str, Any]]:
    """Grid at one layer, COBYLA at one layer, then (two layers) COBYLA on both; best angles kept.

    The same search for every expectation: the grid is in units of the scaled Hamiltonian.

    Returns one entry per stage run, with the evaluations it used and the best energy after it.
    """
    stages: list[dict[str, Any]] = []
    if scale == 0.0:
        # every bit vector has the same energy: one evaluation gives the (uniform) state to sample
        _run_stage(stages, "constant", evaluator, lambda: evaluator(np.zeros(2 * reps)))
        return stages
    budget = evaluator.budget
    large = budget >= 3 * len(GRID_GAMMAS) * len(GRID_BETAS)
    gammas, betas = (GRID_GAMMAS, GRID_BETAS) if large else (SMALL_GRID_GAMMAS, SMALL_GRID_BETAS)
    grid = [(g, b) for g in gammas for b in betas]

    def one_layer(angles: np.ndarray) -> float:
        return evaluator(_pad(angles, reps))

    def run_grid() -> None:
        for g, b in grid:
            one_layer(np.array([g, b]))

    _run_stage(stages, "grid", evaluator, run_grid)
    one_layer_share = 1.0 if reps == 1 else 0.4
    cobyla_one = int((budget - evaluator.evaluations) * one_layer_share)
    start = evaluator.best_angles
    if start is not None and cobyla_one >= 4:
        x0 = np.array([start[0], start[reps]])
        _run_stage(stages, "cobyla-p1", evaluator, lambda: _cobyla(one_layer, x0, cobyla_one))
    if reps > 1 and evaluator.best_angles is not None:
        best = evaluator.best_angles
        x0 = np.concatenate([_interp(best[:reps], reps), _interp(best[reps:], reps)])
        left = budget - evaluator.evaluations
        if left >= 2 * reps + 2:
            _run_stage(stages, f"cobyla-p{reps}", evaluator, lambda: _cobyla(evaluator, x0, left))
    return stages


def qaoa_circuit(h: np.ndarray, J: np.ndarray, reps: int, scale: float = 1.0) -> tuple[Any, list[Any], list[Any]]:
    """The measurement-free QAOA circuit for ``H = (Σ h_i Z_i + Σ J_ij Z_i Z_j) / scale``.

    ``|+⟩^n``, then per layer ``exp(-iγH)`` as RZZ(2γJ_ij/scale) and RZ(2γh_i/scale), and the mixer
    ``exp(-iβΣX)`` as RX(2β). Returns the circuit and its γ and β parameters (bind them by name: qiskit
    sorts ``circuit.parameters`` alphabetically, not by layer).
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    n = len(h)
    scale = scale or 1.0
    gammas = [Parameter(f"gamma_{r}") for r in range(reps)]
    betas = [Parameter(f"beta_{r}") for r in range(reps)]
    circuit = QuantumCircuit(n)
    circuit.h(range(n))
    rows, cols = np.nonzero(J)
    for r in range(reps):
        for i, j in zip(rows, cols):
            circuit.rzz(2.0 * float(J[i, j]) / scale * gammas[r], int(i), int(j))
        for i in np.flatnonzero(h):
            circuit.rz(2.0 * float(h[i]) / scale * gammas[r], int(i))
        circuit.rx(2.0 * betas[r], range(n))
    return circuit, gammas, betas


def circuit_depth(couplings: list[tuple[int, int]], qubits: int, reps: int) -> int:
    """Depth of `qaoa_circuit` before transpiling, by the same as-soon-as-possible layering qiskit's
    ``QuantumCircuit.depth`` uses, without building it (the single-qubit RZs are counted as present)."""
    level = [1] * qubits  # the Hadamard layer
    for _ in range(reps):
        for i, j in couplings:
            level[i] = level[j] = max(level[i], level[j]) + 1
        level = [v + 2 for v in level]  # RZ, RX
    return max(level, default=0)


def _pad(angles: np.ndarray, reps: int) -> np.ndarray:
    """One-layer angles ``[γ, β]`` as a ``reps``-layer vector with the extra layers off."""
    full = np.zeros(2 * reps)
    full[0], full[reps] = angles[0], angles[1]
    return full


def _interp(values: np.ndarray, reps: int) -> np.ndarray:
    """Angles of the first layer spread over ``reps`` layers (INTERP, Zhou et al. 2020, from p = 1)."""
    return np.full(reps, float(values[0]))


def _cobyla(objective: Callable[[np.ndarray], float], x0: np.ndarray, maxiter: int) -> None:
    from scipy.optimize import minimize

    minimize(objective, x0, method="COBYLA", options={"maxiter": int(maxiter), "rhobeg": COBYLA_RHOBEG})


def _run_stage(stages: list[dict[str, Any]], name: str, evaluator: Evaluator, body: Callable[[], object]) -> None:
    before = evaluator.evaluations
    try:
        body()
    except _Stop:
        pass
    stages.append({"stage": name, "evaluations": evaluator.evaluations - before,
                   "best_energy": evaluator.best_energy})


def _sample(probabilities: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` basis-state indices drawn from the probabilities with a seeded generator."""
    p = np.clip(probabilities, 0.0, None)
    p = p / p.sum()
    return np.random.default_rng(seed).choice(len(p), size=shots, p=p)


def _ground_state(probabilities: np.ndarray, energies: np.ndarray) -> dict[str, float]:
    """How much of the final state sits on the QUBO's minimum, against a uniform guess.

    The statevector method computes all ``2**n`` energies anyway, so the minimum is known exactly; these
    two numbers show what QAOA contributed beyond sampling the uniform superposition.
    """
    lowest = energies.min()
    ground = energies <= lowest + 1e-9 * max(1.0, abs(float(lowest)))
    return {"ground_state_probability": float(probabilities[ground].sum()),
            "uniform_ground_state_probability": float(ground.sum() / len(energies))}


def _rank(decoded: Decoded) -> tuple[bool, float, bool]:
    """Feasible first, then lower cost, then a sample that needed no repair."""
    return (not decoded.feasible, decoded.cost, not decoded.raw_feasible)


def decode_samples(encoding: Encoding, samples: np.ndarray,
                   energies: np.ndarray) -> tuple[Decoded, dict[str, Any]]:
    """`decode_rows` for basis-state indices drawn from the statevector, with their precomputed energies."""
    indices, counts = np.unique(samples, return_counts=True)
    return decode_rows(encoding, indices_to_bits(indices, encoding.qubo.n), counts, energies[indices])


def decode_rows(encoding: Encoding, rows: np.ndarray, counts: np.ndarray,
                energies: np.ndarray | None = None) -> tuple[Decoded, dict[str, Any]]:
    """The best decoded sample by `_rank` (ties: the first row; callers order rows by basis-state index)
    and the raw statistics, from distinct bit rows, their shot counts and (when known) their energies."""
    if energies is None:
        energies = encoding.qubo.energies(rows)
    best: Decoded | None = None
    raw_feasible = 0
    for row, count in zip(rows, counts):
        decoded = encoding.decode(row)
        raw_feasible += int(count) if decoded.raw_feasible else 0
        if best is None or _rank(decoded) < _rank(best):
            best = decoded
    assert best is not None
    shots = int(np.sum(counts))
    stats = {
        "best_raw_energy": float(np.min(energies)),
        "mean_raw_energy": float(np.dot(energies, counts) / shots),
        "feasible_share": raw_feasible / shots,
        "distinct_samples": int(len(rows)),
    }
    return best, stats
