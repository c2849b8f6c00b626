"""A tiny solve of each kind a lane handles, run in every pool child before its first task.

Imports (qiskit, PyVRP, HiGHS), Aer's first run and the emulated device's noise model cost up to a second
the first time; paying that at start keeps it off the sync fast path.
"""

from __future__ import annotations

from typing import Any

import structlog

from solvers.circuits import BELL
from solvers.problems import parse_problem
from solvers.registry import choose_solver

log = structlog.get_logger("qgate.worker")
SAMPLES: tuple[dict[str, Any], ...] = (
    {"kind": "tsp", "locations": [[0, 0], [1, 0], [1, 1], [0, 1]]},
    {"kind": "tsp", "locations": [[i % 5, i // 5] for i in range(20)]},
    {"kind": "cvrp", "locations": [[0, 0], [1, 0], [0, 1]], "demands": [0, 1, 1], "vehicle_capacity": 2,
     "num_vehicles": 1},
    {"kind": "assignment", "costs": [[1, 2]], "weights": [1], "capacities": [1, 1]},
    {"kind": "qubo", "n": 2, "terms": [[0, 1, -1]]},
    {"kind": "qubo", "n": 21, "terms": [[i, i + 1, -1] for i in range(20)]},
    {"kind": "circuit", "qasm": BELL, "shots": 16},
)


def warm_up(lane: str, solvers: list[Any], limits: Any) -> None:
    for sample in SAMPLES:
        problem = parse_problem(sample)
        solver, _ = choose_solver(lane, problem, limits, solvers)
        if solver is None:
            continue
        try:
            solver.solve(problem, time_limit_s=2.0, seed=1)
        except Exception as exc:  # a failed warm-up costs only latency; the real attempt reports errors
            log.warning("warm_up_failed", lane=lane, kind=problem.kind, error=f"{type(exc).__name__}: {exc}")
