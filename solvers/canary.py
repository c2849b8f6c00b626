"""The qpu lane's calibration canary: a reference circuit whose ideal counts are known exactly.

A GHZ state on ``n`` qubits ideally measures all-zeros or all-ones, half the shots each. Readout error,
gate error and decoherence all move shots elsewhere, so the Hellinger fidelity between the measured
counts and that ideal distribution (1.0 ideal; 0.5 or less when a share of the shots land on other
strings) falls as the device's calibration drifts. The circuit runs through the lane's own solver and
adapter (transpiled for the device, submitted, polled, cancelled on a timeout), exactly as a job would.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from solvers.problems import parse_problem

MIN_QUBITS, MAX_QUBITS = 2, 16


def ghz_qasm(qubits: int) -> str:
    """OpenQASM 2 for an ``qubits``-qubit GHZ state, every qubit measured."""
    if not MIN_QUBITS <= qubits <= MAX_QUBITS:
        raise ValueError(f"a canary GHZ circuit has {MIN_QUBITS} to {MAX_QUBITS} qubits, not {qubits}")
    lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', f"qreg q[{qubits}];", f"creg c[{qubits}];", "h q[0];"]
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(qubits - 1)]
    lines += [f"measure q[{i}] -> c[{i}];" for i in range(qubits)]
    return "\n".join(lines) + "\n"


def ideal_distribution(qubits: int) -> dict[str, float]:
    return {"0" * qubits: 0.5, "1" * qubits: 0.5}


def fidelity(counts: dict[str, int], qubits: int) -> float:
    """Hellinger fidelity of ``counts`` against the ideal GHZ distribution (qiskit's definition)."""
    from qiskit.quantum_info import hellinger_fidelity

    if not counts or sum(counts.values()) <= 0:
        raise ValueError("no shots to score")
    return float(hellinger_fidelity(counts, ideal_distribution(qubits)))


@dataclass(frozen=True)
class CanaryReading:
    """One canary run: its fidelity, or the error that kept it from having one."""

    at: float
    backend: str
    qubits: int
    shots: int
    fidelity: float | None = None
    job: str | None = None
    transpiled_depth: int | None = None
    duration_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def run_canary(solver: Any, *, qubits: int, shots: int, seed: int, time_limit_s: float) -> CanaryReading:
    """Run the GHZ canary through ``solver`` (the lane's `QpuCircuitSolver`) and score it. Provider errors
    and timeouts become a reading with ``error``: a canary that could not run says nothing about drift."""
    problem = parse_problem({"kind": "circuit", "qasm": ghz_qasm(qubits), "shots": shots})
    started, at = time.monotonic(), time.time()
    backend = solver.adapter.name
    try:
        solution = solver.solve(problem, time_limit_s=time_limit_s, seed=seed)
    except Exception as exc:  # QpuError, TimeoutError, SolverRefused: reported, never raised
        return CanaryReading(at=at, backend=backend, qubits=qubits, shots=shots,
                             duration_s=round(time.monotonic() - started, 3),
                             error=solver.adapter.redact(f"{type(exc).__name__}: {exc}")[:300])
    details = solution.details
    return CanaryReading(at=at, backend=backend, qubits=qubits, shots=shots,
                         fidelity=round(fidelity(solution.result["counts"], qubits), 4),
                         job=details.get("job"), transpiled_depth=details.get("transpiled_depth"),
                         duration_s=round(time.monotonic() - started, 3))
