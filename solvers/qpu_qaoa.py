"""The qpu lane's optimiser: QAOA for qubo, tsp and assignment, angles found classically, shots on the device.

The angles come from the sim lane's search (`solvers.qaoa.search_angles`: a grid, then COBYLA) at one layer:
on a noisy device every further layer adds the same number of two-qubit gates again, and the device's errors
grow with them. Up to `QPU_QAOA_STATEVECTOR_MAX_QUBITS` the search runs on the noiseless statevector (as the
sim lane's); beyond it, on the exact one-layer energy in closed form (`solvers.qaoa_p1`), which costs
couplings × qubits per evaluation instead of 2**n, so the angles are still optimised, not fixed.

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
from solvers.capability import (
    QAOA_EVALUATIONS,
    QAOA_KINDS,
    QPU_QAOA_SHOTS,
    QPU_QAOA_STATEVECTOR_MAX_QUBITS,
    check_qpu_qaoa,
    qaoa_closed_form_seconds,
)
from solvers.encodings import Encoding, encode
from solvers.qaoa import AngleSearch, QaoaSolver, decode_rows, qaoa_circuit
from solvers.qaoa_p1 import optimise_angles_closed_form
from solvers.qpu import QpuCircuitSolver, _physical_qubits
from solvers.qpu_base import QpuAdapter

QPU_QAOA_REPS = 1
# Share of the time limit the angle search may plan for: the rest is transpiling and the device's queue.
SEARCH_SHARE = 0.5
TWO_QUBIT_GATES = frozenset({"cx", "ecr", "cz", "swap", "rzz", "iswap"})


class QpuQaoaSolver:
    """QAOA on the qpu lane: angles optimised noiselessly (statevector, or the closed form past
    ``statevector_max_qubits``), transpiled and sampled on the adapter's device."""

    lane = "qpu"
    kinds = QAOA_KINDS

    def __init__(self, adapter: QpuAdapter, *, shots: int = QPU_QAOA_SHOTS, poll_interval_s: float = 0.02,
                 max_evaluations: int | None = None, stop_after_evaluations: int | None = None,
                 statevector_max_qubits: int = QPU_QAOA_STATEVECTOR_MAX_QUBITS) -> None:
        self.adapter = adapter
        self.statevector_max_qubits = statevector_max_qubits
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
        self._refuse_unsampleable(encoding, (1.0 - SEARCH_SHARE) * time_limit_s)
        search = self.search(encoding, SEARCH_SHARE * time_limit_s, started + SEARCH_SHARE * time_limit_s)
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
        rows, shots = counts_to_rows(counts, encoding.qubo.n)
        best, stats = decode_rows(encoding, rows, shots)
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
                "angles_from": search.method,
                "transpiled_depth": depth,
                "two_qubit_gates": two_qubit,
                "layout": _physical_qubits(isa),
            },
            "queue_s": queue_s,
            "cost": adapter.cost_estimate(self.shots),
            "runtime_s": round(time.perf_counter() - started, 4),
        }
        return Solution(result=best.result, details=details, calibration=calibration)

    def _refuse_unsampleable(self, encoding: Encoding, room_s: float) -> None:
        """Refuse at once what the adapter says cannot be sampled in the time left after the search, with a
        margin of two for the estimate: Aer's simulation cannot be interrupted, so an attempt that starts
        it holds the worker to the end (a dense 16-variable QUBO on fake_guadalupe: 115 s)."""
        qubits, gates = encoding.qubo.n, len(encoding.qubo.interactions())
        expected = self.adapter.sampling_seconds(qubits, gates, self.shots)
        if expected is not None and expected / 2 > room_s:
            raise SolverRefused(f"capacity: sampling {qubits} qubits on the emulated {self.adapter.name} takes "
                                f"~{_seconds(expected)} s, more than twice the {_seconds(room_s)} s left for it")

    def search(self, encoding: Encoding, time_limit_s: float, deadline: float) -> AngleSearch:
        """The one-layer angles: on the statevector up to ``statevector_max_qubits``, in closed form beyond,
        with as many evaluations as the plan (or a replay's record) allows and ``time_limit_s`` fits."""
        n = encoding.qubo.n
        if n <= self.statevector_max_qubits:
            return self.angles.optimise_angles(encoding, time_limit_s, deadline)
        wanted = self.angles.max_evaluations or QAOA_EVALUATIONS[1]
        fits = int(time_limit_s / qaoa_closed_form_seconds(n, len(encoding.qubo.interactions())))
        return optimise_angles_closed_form(encoding, max(1, min(wanted, fits)), deadline,
                                           self.angles.stop_after_evaluations)


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


def counts_to_rows(counts: dict[str, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(k, n)`` bit rows (``row[i]`` is qubit ``i``, the key's last character) in ascending
    basis-state order, and their shot counts; any width (a 127-qubit key is no int64)."""
    keys = sorted(counts, key=lambda key: int(key, 2))
    rows = np.array([[int(bit) for bit in reversed(key.zfill(n)[-n:])] for key in keys], dtype=np.uint8)
    return rows.reshape(len(keys), n), np.array([int(counts[key]) for key in keys], dtype=np.int64)


def _seconds(value: float) -> str:
    """Two significant figures below 100 s (0.49, 3, 95), whole seconds above."""
    return f"{value:.2g}" if value < 100 else f"{value:.0f}"


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
