"""Regression: PyVRP's penalty bounds must follow the wrapper's distance scale, or a tight-capacity
instance ends with infeasible routes (found on CVRPLIB X-n157-k13 by the solver benchmark)."""

from __future__ import annotations

from bench.solvers import best_known, load_rounded
from solvers.heuristic import PyVrpRouting
from solvers.objective import score


def test_tight_capacity_instance_gets_feasible_routes_near_the_best_known_cost() -> None:
    problem = load_rounded("X-n157-k13")
    solution = PyVrpRouting().solve(problem, time_limit_s=1.5, seed=1)
    scored = score(problem, solution.result)
    assert scored["feasible"], scored.get("violations")
    assert scored["cost"] < best_known("X-n157-k13") * 1.05
