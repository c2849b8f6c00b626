"""Solver-lane benchmarks, side by side in one run.

1. Heuristic quality on CVRPLIB X instances at several budgets: the lane's solver (the wrapper qgate
   runs) against PyVRP called directly with the same budget and seed, both as gaps to the best-known
   cost. The wrapper must not cost quality.
2. QAOA (sim lane) time per problem size, from 4 qubits to the lane's limit.
3. Emulated-QPU time per shot count for GHZ-3 (warm).

Usage: python -m bench.solvers [--budgets 1,5,30] [--instances X-n101-k25,...]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import vrplib

from solvers.circuits import GHZ3
from solvers.heuristic import PyVrpRouting
from solvers.instances import problem_from_vrplib
from solvers.objective import score
from solvers.problems import parse_problem

DATA = Path(__file__).parent / "data"
INSTANCES = ("X-n101-k25", "X-n157-k13", "X-n200-k36")


def best_known(name: str) -> float:
    for line in (DATA / f"{name}.sol").read_text().splitlines():
        if line.startswith("Cost"):
            return float(line.split()[1])
    raise ValueError(f"{name}.sol has no Cost line")


def load_rounded(name: str) -> Any:
    """The instance with CVRPLIB's convention: Euclidean distances rounded to the nearest integer."""
    instance = vrplib.read_instance(str(DATA / f"{name}.vrp"))
    instance["edge_weight"] = np.round(instance["edge_weight"])
    return parse_problem(problem_from_vrplib(instance))


def direct_pyvrp(name: str, budget_s: float, seed: int) -> float | None:
    import pyvrp
    from pyvrp.stop import MaxRuntime

    data = pyvrp.read(str(DATA / f"{name}.vrp"), round_func="round")
    result = pyvrp.solve(data, stop=MaxRuntime(budget_s), seed=seed, display=False)
    return float(result.cost()) if result.is_feasible() else None


def heuristic_quality(instances: list[str], budgets: list[float], seed: int = 1) -> list[dict[str, Any]]:
    rows = []
    for name in instances:
        bks, problem = best_known(name), load_rounded(name)
        for budget in budgets:
            solution = PyVrpRouting().solve(problem, time_limit_s=budget, seed=seed)
            scored = score(problem, solution.result)
            direct_cost = direct_pyvrp(name, budget, seed)
            rows.append({"instance": name, "budget_s": budget, "bks": bks,
                         "lane_gap_pct": _gap(scored["cost"] if scored["feasible"] else None, bks),
                         "direct_gap_pct": _gap(direct_cost, bks),
                         "lane_runtime_s": solution.details["runtime_s"],
                         "lane_iterations": solution.details["iterations"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _gap(cost: float | None, bks: float) -> float | None:
    """Percent above the best-known cost; None for an infeasible answer (its cost means nothing)."""
    return None if cost is None else round(100 * (cost / bks - 1), 2)


def qaoa_times(sizes: list[int], time_limit_s: float = 30.0) -> list[dict[str, Any]]:
    from solvers.qaoa import QaoaSolver

    rows = []
    for n in sizes:
        rng = random.Random(n)
        terms = [[i, j, rng.uniform(-1, 1)] for i in range(n) for j in range(i, n) if rng.random() < 0.5]
        problem = parse_problem({"kind": "qubo", "n": n, "terms": terms})
        started = time.perf_counter()
        solution = QaoaSolver().solve(problem, time_limit_s=time_limit_s, seed=1)
        quantum = solution.details["quantum"]
        rows.append({"qubits": n, "seconds": round(time.perf_counter() - started, 2),
                     "evaluations": quantum["optimizer_evaluations"], "reps": quantum["reps"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def qpu_times(shots: list[int]) -> list[dict[str, Any]]:
    from solvers.qpu import EmulatedQpu, QpuCircuitSolver

    solver = QpuCircuitSolver(EmulatedQpu())
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 16})
    solver.solve(problem, time_limit_s=30, seed=1)  # warm: noise model, transpiler
    rows = []
    for count in shots:
        problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": count})
        started = time.perf_counter()
        solver.solve(problem, time_limit_s=60, seed=1)
        rows.append({"shots": count, "seconds": round(time.perf_counter() - started, 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", default="1,5,30")
    parser.add_argument("--instances", default=",".join(INSTANCES))
    parser.add_argument("--qaoa-sizes", default="4,8,12,16,20")
    args = parser.parse_args()
    report = {
        "qpu_ghz3": qpu_times([100, 1000, 10_000, 100_000]),
        "qaoa_qubo": qaoa_times([int(n) for n in args.qaoa_sizes.split(",")]),
        "heuristic_cvrp": heuristic_quality(args.instances.split(","), [float(b) for b in args.budgets.split(",")]),
    }
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "solvers.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
