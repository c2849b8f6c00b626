"""The sim lane: ideal (noise-free) circuit simulation on Qiskit Aer."""

from __future__ import annotations

import time
from typing import Any

from solvers.base import LaneLimits, Solution, Verdict
from solvers.capability import SIM_DEFAULT_MAX_QUBITS, check_circuit, package_version
from solvers.circuits import parse_qasm

DEFAULT_SEED = 0
_SEED_SPAN = 2**31 - 2


def simulator_seed(seed: int | None) -> int:
    """The ``seed_simulator`` actually passed to Aer for a job seed.

    Some qiskit code paths treat a seed of 0 as "no seed" (``if seed:``) and silently draw a random one,
    so job seed s maps to ``1 + s mod (2**31 - 2)``: never 0, within a signed 32-bit int, and ``None``
    maps to the fixed ``DEFAULT_SEED`` so unseeded jobs still reproduce.
    """
    return 1 + (DEFAULT_SEED if seed is None else seed) % _SEED_SPAN


def normalise_counts(counts: dict[str, int]) -> dict[str, int]:
    """Counts keyed by plain bitstrings: qiskit puts a space between classical registers."""
    return {key.replace(" ", ""): int(value) for key, value in sorted(counts.items())}


class AerCircuit:
    """Runs a circuit's measured shots on AerSimulator with the given (or automatic) method."""

    lane = "sim"
    id = "aer"
    kinds = frozenset({"circuit"})

    def __init__(self, method: str = "automatic", default_max_qubits: int = SIM_DEFAULT_MAX_QUBITS) -> None:
        self.version = package_version("qiskit-aer")
        self.method = method
        self.default_max_qubits = default_max_qubits
        self._simulator: Any = None

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_circuit(problem, limits, default_max_qubits=self.default_max_qubits)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        from qiskit import transpile

        started = time.perf_counter()
        simulator = self._backend()
        sim_seed = simulator_seed(seed)
        circuit = transpile(parse_qasm(problem.qasm).copy(), simulator, seed_transpiler=sim_seed)
        job = simulator.run(circuit, shots=problem.shots, seed_simulator=sim_seed)
        remaining = max(0.0, time_limit_s - (time.perf_counter() - started))
        try:
            result = job.result(timeout=remaining)
        except TimeoutError:
            job.cancel()
            raise TimeoutError(f"Aer simulation exceeded the {time_limit_s:g} s time limit") from None
        if not result.success:
            raise RuntimeError(f"Aer simulation failed: {result.status}")
        details = {
            "seed": seed,
            "seed_simulator": sim_seed,
            "shots": problem.shots,
            "method": result.results[0].metadata.get("method", self.method),
            "runtime_s": round(time.perf_counter() - started, 4),
        }
        return Solution(result={"counts": normalise_counts(result.get_counts(0))}, details=details)

    def _backend(self) -> Any:
        if self._simulator is None:
            from qiskit_aer import AerSimulator

            self._simulator = AerSimulator(method=self.method)
        return self._simulator
