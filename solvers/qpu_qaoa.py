"""The qpu lane's optimiser: QAOA for qubo, tsp and assignment, angles found classically, shots on the device.

The angles come from the sim lane's search (`solvers.qaoa.QaoaSolver.optimise_angles`: a grid, then COBYLA,
on the noiseless statevector), at one layer: on a noisy device every further layer adds the same number of
two-qubit gates again, and the device's errors grow with them. The search is bounded by the statevector's
limits (`QPU_QAOA_MAX_QUBITS`); larger problems are refused with that reason rather than run with angles
nobody optimised for them.

The bound circuit is transpiled to the device's target (seeded), checked against the device's useful size,
and sampled through the adapter with the qpu lane's circuit machinery (`QpuCircuitSolver.sample`: submit,
poll against the time limit, cancel the provider's job when the attempt is cancelled or runs out of time).

How much a device can hold before its errors leave noise only was measured on the emulated devices
(``python -m bench.qpu_depth``): the useful limit is a number of the circuit's two-qubit gates *before
routing* (one RZZ per coupling per layer), the quantity the planner can count without a device. Routing
on a heavy-hex device adds SWAPs, which the measurement includes. The limit scales with the device's
median two-qubit gate error: ``limit = NOISE_BUDGET / median error`` (`useful_two_qubit_gates`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from solvers.aer import simulator_seed
from solvers.base import LaneLimits, NoFeasibleSolution, Solution, SolverRefused, Verdict
from solvers.capability import QAOA_KINDS, QPU_QAOA_SHOTS, check_qpu_qaoa
from solvers.encodings import encode
from solvers.qaoa import QaoaSolver, decode_samples, qaoa_circuit
from solvers.qpu import QpuCircuitSolver, _physical_qubits
from solvers.qpu_base import QpuAdapter

QPU_QAOA_REPS = 1
# Share of the time limit the angle search may plan for: the rest is transpiling and the device's queue.
SEARCH_SHARE = 0.5
TWO_QUBIT_GATES = frozenset({"cx", "ecr", "cz", "swap", "rzz", "iswap"})


class QpuQaoaSolver:
    """QAOA on the qpu lane: statevector-optimised angles, transpiled and sampled on the adapter's device."""

    lane = "qpu"
    kinds = QAOA_KINDS

    def __init__(self, adapter: QpuAdapter, *, shots: int = QPU_QAOA_SHOTS, poll_interval_s: float = 0.02,
                 max_evaluations: int | None = None, stop_after_evaluations: int | None = None) -> None:
        self.adapter = adapter
        self.shots = shots
        self.device = QpuCircuitSolver(adapter, poll_interval_s=poll_interval_s)
        self.angles = QaoaSolver(shots=shots, reps=QPU_QAOA_REPS, max_evaluations=max_evaluations,
                                 stop_after_evaluations=stop_after_evaluations)
        self.id = f"qpu-qaoa-{adapter.name}"
        self.version = f"{adapter.version}+{self.angles.version}"

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        device = self.adapter.limits()
        merged = LaneLimits(max_qubits=_least(limits.max_qubits, device.max_qubits),
                            max_shots=_least(limits.max_shots, device.max_shots),
                            max_two_qubit_gates=_least(limits.max_two_qubit_gates, device.max_two_qubit_gates))
        return check_qpu_qaoa(problem, merged, shots=self.shots, device=self.adapter.name)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        started = time.perf_counter()
        deadline = time.monotonic() + time_limit_s
        verdict = self.can_solve(problem, LaneLimits())
        if not verdict.ok:
            raise SolverRefused(verdict.reason)
        encoding = encode(problem)
        search = self.angles.optimise_angles(encoding, SEARCH_SHARE * time_limit_s,
                                             started + SEARCH_SHARE * time_limit_s)
        adapter = self.adapter
        with adapter.attempt(deadline):
            circuit = bound_circuit(search)
            isa = adapter.transpile(circuit, seed)
            depth, two_qubit = isa.depth(), two_qubit_gates(isa)
            max_depth = adapter.limits().max_depth
            if max_depth is not None and depth > max_depth:
                raise SolverRefused(f"capacity: depth {depth} > {max_depth} after transpiling to {adapter.name}")
            handle, counts, queue_s = self.device.sample(isa, self.shots, seed, deadline, time_limit_s)
            calibration = adapter.calibration_snapshot()
        samples = counts_to_indices(counts)
        best, stats = decode_samples(encoding, samples, search.energies)
        if not best.feasible:
            raise NoFeasibleSolution(f"infeasible: none of {self.shots} device samples could be repaired into "
                                     "an assignment within every truck's capacity")
        details = {
            "seed": seed,
            "seed_transpiler": simulator_seed(seed),
            "backend": adapter.name,
            "job": handle,
            "qubits": encoding.qubo.n,
            "encoding": encoding.kind,
            "penalty": encoding.penalty,
            "repaired": not best.raw_feasible,
            "quantum": {
                "shots": self.shots,
                **stats,
                **search.details(),
                "angles_from": "noiseless statevector search",
                "transpiled_depth": depth,
                "two_qubit_gates": two_qubit,
                "layout": _physical_qubits(isa),
            },
            "queue_s": queue_s,
            "cost": adapter.cost_estimate(self.shots),
            "runtime_s": round(time.perf_counter() - started, 4),
        }
        return Solution(result=best.result, details=details, calibration=calibration)


def bound_circuit(search: Any) -> Any:
    """The QAOA circuit at the search's best angles, every qubit measured (counts keys are little-endian:
    the key read as a binary number is the basis-state index of `solvers.encodings.energy_vector`)."""
    circuit, gammas, betas = qaoa_circuit(search.h, search.J, search.reps, search.scale)
    binding = {param: float(value) for param, value in zip(gammas + betas, search.angles)}
    bound = circuit.assign_parameters(binding, inplace=False)
    bound.measure_all()
    return bound


def two_qubit_gates(circuit: Any) -> int:
    """Two-qubit gates in a (transpiled) circuit."""
    return int(sum(count for name, count in circuit.count_ops().items() if name in TWO_QUBIT_GATES))


def counts_to_indices(counts: dict[str, int]) -> np.ndarray:
    """One basis-state index per shot, in a fixed order (ascending bitstring)."""
    keys = sorted(counts)
    return np.repeat(np.array([int(key, 2) for key in keys], dtype=np.int64),
                     [int(counts[key]) for key in keys])


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
