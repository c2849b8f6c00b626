"""The one interface every solver implements, and the shapes it returns.

Solvers know nothing of Celery, Flask or Redis: they take a validated problem, a deadline and a seed,
and return a solution that the gateway checks and scores with `solvers.objective` before anyone sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Verdict:
    """A capability check's answer: yes, or no with a reason such as ``capacity: 30 qubits > 24``."""

    ok: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> "Verdict":
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> "Verdict":
        return cls(False, reason)


@dataclass(frozen=True)
class LaneLimits:
    """What a lane's workers can hold; published by the workers, read by the planner."""

    max_qubits: int | None = None
    max_depth: int | None = None
    max_nodes: int | None = None
    max_shots: int | None = None
    # A noisy device's useful size: two-qubit gates of a QAOA circuit before routing (`solvers.qpu_qaoa`).
    max_two_qubit_gates: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in _LIMITS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LaneLimits":
        return cls(**{k: data.get(k) for k in _LIMITS})


_LIMITS = ("max_qubits", "max_depth", "max_nodes", "max_shots", "max_two_qubit_gates")


@dataclass
class Solution:
    """A solver's raw answer. ``result`` holds the kind's solution fields only (tour, routes, ...);
    cost/energy are added by `solvers.objective`, never copied from here."""

    result: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None


class SolverRefused(Exception):
    """Raised by ``solve`` when the problem turns out not to fit (e.g. too deep after transpiling)."""


class NoFeasibleSolution(ValueError):
    """Raised by ``solve`` when the solver proves, or fails within its limit to find, any feasible answer.

    Unlike `SolverRefused` the solver did accept and work on the problem; the message gives the reason.
    """


class Solver(Protocol):
    lane: str
    id: str
    version: str
    kinds: frozenset[str]

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict: ...

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution: ...
