"""Cheap capability checks shared by the solvers' ``can_solve`` and the registry's ``static_verdict``.

Nothing here imports qiskit, PyVRP or PuLP: the HTTP ingress runs these checks while planning. (Counting a
circuit's qubits parses its QASM, which imports qiskit, but validating a circuit problem already did that.)
Refusal reasons start with ``capacity:`` so callers can tell "too big for this lane" from "cannot do it".
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from solvers.base import LaneLimits, Verdict

QUBO_EXACT_MAX_VARS = 20
SIM_DEFAULT_MAX_QUBITS = 24


@lru_cache(maxsize=None)
def package_version(name: str) -> str:
    """An installed distribution's version without importing it (importing qiskit or PyVRP is slow)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def check_nodes(problem: Any, limits: LaneLimits) -> Verdict:
    """Routing problems: node count against the lane's published ``max_nodes``."""
    if limits.max_nodes is not None and problem.size > limits.max_nodes:
        return Verdict.no(f"capacity: {problem.size} nodes > {limits.max_nodes}")
    return Verdict.yes()


def check_qubo_exact(problem: Any) -> Verdict:
    """Exact enumeration visits all 2**n bit vectors, so it is limited to small n."""
    if problem.n > QUBO_EXACT_MAX_VARS:
        return Verdict.no(f"capacity: n={problem.n} > {QUBO_EXACT_MAX_VARS} for exact enumeration")
    return Verdict.yes()


def check_circuit(problem: Any, limits: LaneLimits, *, default_max_qubits: int | None = None,
                  device_qubits: int | None = None, device: str | None = None) -> Verdict:
    """Qubits against the device (when there is one) and the lane's ``max_qubits`` (``default_max_qubits``
    when the lane publishes none); shots against the lane's ``max_shots``."""
    qubits = problem.num_qubits
    if device_qubits is not None and qubits > device_qubits:
        return Verdict.no(f"capacity: {qubits} qubits > {device_qubits} on {device or 'the device'}")
    lane_max = limits.max_qubits if limits.max_qubits is not None else default_max_qubits
    if lane_max is not None and qubits > lane_max:
        return Verdict.no(f"capacity: {qubits} qubits > {lane_max}")
    if limits.max_shots is not None and problem.shots > limits.max_shots:
        return Verdict.no(f"capacity: {problem.shots} shots > {limits.max_shots}")
    return Verdict.yes()
