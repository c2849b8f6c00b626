"""The heuristic lane's MILPs: CBC (the former path, kept here as the reference) against HiGHS, side by side.

1. In-process solve times, CBC and HiGHS alternating on the same instances in one run: assignment
   (8×4, 40×10, 200×20 loads × trucks) and the exact TSP MILP (10, 13, 16 nodes); p50 and max over
   ``--runs`` runs per size and solver (``--slow-runs`` for 200×20 and 16 nodes), with a small PyVRP CVRP
   solved every few runs (the sequence in which CBC was caught sleeping). Each run uses instance
   ``run % 10`` of its size with a fixed seed, so a run can be compared with the other runs of the same
   instance. "limit hits without a reason" counts runs that ended at their time limit (not proven optimal,
   or at least 90% of the budget spent) on an instance whose median run for that solver proved optimality
   within 10% of the budget.
2. Through the whole stack (`tests.integration.test_milp_lane.run_sequence`): 200 assignment and 200
   small-TSP MILPs back to back on the sync fast path, interleaved with PyVRP jobs, and how many took more
   than ten times the median of their instance.

Usage: python -m bench.milp [--runs 50] [--slow-runs 50] [--time-limit 5] [--stack-jobs 200]
       [--stack-pyvrp 20] [--skip-stack]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from solvers.base import NoFeasibleSolution, Solution
from solvers.capability import package_version
from solvers.heuristic import (
    HighsAssignment,
    MilpTsp,
    PyVrpRouting,
    _assignment_precheck,
    _budget,
    _local_search_tour,
    _tour_cost,
)
from solvers.objective import score
from solvers.problems import parse_problem
from tests.integration import problems
from tests.integration.test_milp_lane import assignment

ASSIGNMENT_SIZES = ((8, 4), (40, 10), (200, 20))
TSP_SIZES = (10, 13, 16)
SLOW = {"assignment 200x20", "tsp 16"}
INSTANCES = 10
SEED = 7
CVRP_EVERY = 4


# --- the former CBC path (solvers/heuristic.py before HiGHS), verbatim in what it runs ---------------

class CbcAssignmentReference:
    id = "pulp-cbc"

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        import pulp

        started = time.perf_counter()
        _assignment_precheck(problem)
        loads, trucks = range(len(problem.costs)), range(len(problem.capacities))
        model = pulp.LpProblem("assignment", pulp.LpMinimize)
        new_var = getattr(model, "add_variable", None) or pulp.LpVariable
        x = [[new_var(f"x_{l}_{t}", cat=pulp.LpBinary) for t in trucks] for l in loads]
        model += pulp.lpSum(problem.costs[l][t] * x[l][t] for l in loads for t in trucks)
        for l in loads:
            model += pulp.lpSum(x[l]) == 1, f"load_{l}"
        for t in trucks:
            model += pulp.lpSum(problem.weights[l] * x[l][t] for l in loads) <= problem.capacities[t], \
                f"truck_{t}"
        budget = _budget(time_limit_s, time.perf_counter() - started)
        model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=budget, threads=1))
        status = pulp.LpStatus[model.status]
        if model.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            raise NoFeasibleSolution(f"no feasible assignment found within {budget:.2f} s (CBC: {status})")
        result = [next(t for t, var in enumerate(row) if (var.value() or 0) > 0.5) for row in x]
        details = {"optimal": model.sol_status == pulp.LpSolutionOptimal, "status": status,
                   "search_budget_s": budget, "runtime_s": round(time.perf_counter() - started, 4)}
        return Solution(result={"assignment": result}, details=details)


class CbcTspReference:
    id = "milp-tsp-cbc"
    TIME_SHARE, MIN_S = 0.85, 0.1

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        import pulp

        started = time.perf_counter()
        d = problem.distance_matrix()
        n = problem.size
        start = _local_search_tour(d)
        budget = self.TIME_SHARE * time_limit_s - (time.perf_counter() - started)
        model = pulp.LpProblem("tsp", pulp.LpMinimize)
        new_var = getattr(model, "add_variable", None) or pulp.LpVariable
        arcs = [(i, j) for i in range(n) for j in range(n) if i != j]
        x = {(i, j): new_var(f"x_{i}_{j}", cat=pulp.LpBinary) for i, j in arcs}
        u = {i: new_var(f"u_{i}", lowBound=1, upBound=n - 1) for i in range(1, n)}
        model += pulp.lpSum(d[i][j] * x[i, j] for i, j in arcs)
        for k in range(n):
            model += pulp.lpSum(x[k, j] for j in range(n) if j != k) == 1, f"out_{k}"
            model += pulp.lpSum(x[i, k] for i in range(n) if i != k) == 1, f"in_{k}"
        for i in range(1, n):
            model += u[i] <= (n - 1) - (n - 2) * x[0, i], f"first_{i}"
            model += u[i] >= 1 + (n - 2) * x[i, 0], f"last_{i}"
            for j in range(1, n):
                if i != j:
                    model += u[i] - u[j] + (n - 1) * x[i, j] + (n - 3) * x[j, i] <= n - 2, f"mtz_{i}_{j}"
        succ = {a: b for a, b in zip(start, start[1:] + start[:1])}
        for (i, j), var in x.items():
            var.setInitialValue(1 if succ[i] == j else 0)
        for pos, node in enumerate(start[1:], start=1):
            u[node].setInitialValue(pos)
        with tempfile.TemporaryDirectory(prefix="qgate-cbc-") as tmp:
            log_path = os.path.join(tmp, "cbc.log")
            model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=budget, threads=1, warmStart=True,
                                          logPath=log_path))
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                log = fh.read()
        optimal = model.sol_status == pulp.LpSolutionOptimal
        tour = start
        if model.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            nxt = {i: j for (i, j), var in x.items() if (var.value() or 0) > 0.5}
            found = [0]
            while len(found) < n and nxt.get(found[-1], 0) != 0:
                found.append(nxt[found[-1]])
            if len(found) == n and sorted(found) == list(range(n)) and \
                    _tour_cost(d, found) <= _tour_cost(d, start) + 1e-9:
                tour = found
        gap = re.search(r"^Gap\s*:?\s*(-?[0-9.eE+]+)", log, re.MULTILINE)
        details = {"optimal": optimal, "status": pulp.LpSolution[model.sol_status],
                   "gap": 0.0 if optimal else (float(gap.group(1)) if gap else None),
                   "search_budget_s": budget, "runtime_s": round(time.perf_counter() - started, 4)}
        return Solution(result={"tour": tour}, details=details)


# --- 1. in-process, side by side -------------------------------------------------------------------

def _instances() -> dict[str, list[Any]]:
    sizes: dict[str, list[Any]] = {}
    for loads, trucks in ASSIGNMENT_SIZES:
        sizes[f"assignment {loads}x{trucks}"] = [
            parse_problem(assignment(1000 * loads + k, loads, trucks)) for k in range(INSTANCES)]
    for n in TSP_SIZES:
        sizes[f"tsp {n}"] = [parse_problem(problems.tsp(n, 1000 * n + k)) for k in range(INSTANCES)]
    return sizes


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def side_by_side(runs: int, slow_runs: int, time_limit_s: float) -> list[dict[str, Any]]:
    solvers = {"cbc": {"assignment": CbcAssignmentReference(), "tsp": CbcTspReference()},
               "highs": {"assignment": HighsAssignment(), "tsp": MilpTsp()}}
    pyvrp = PyVrpRouting()
    cvrp = parse_problem(problems.cvrp(15, 2))
    for by_kind in solvers.values():  # imports and first-run costs off the clock
        by_kind["assignment"].solve(parse_problem(assignment(1)), time_limit_s=2, seed=SEED)
        by_kind["tsp"].solve(parse_problem(problems.tsp(6, 1)), time_limit_s=2, seed=SEED)
    rows = []
    done = 0
    for size, instances in _instances().items():
        kind = size.split()[0]
        samples: dict[str, list[tuple[int, float, bool, float]]] = defaultdict(list)
        for run in range(slow_runs if size in SLOW else runs):
            k = run % INSTANCES
            problem = instances[k]
            order = ("cbc", "highs") if run % 2 == 0 else ("highs", "cbc")
            for name in order:
                if done % CVRP_EVERY == 0:
                    pyvrp.solve(cvrp, time_limit_s=0.3, seed=run)
                done += 1
                started = time.perf_counter()
                try:
                    solution = solvers[name][kind].solve(problem, time_limit_s=time_limit_s, seed=SEED)
                    optimal = bool(solution.details.get("optimal"))
                    budget = float(solution.details.get("search_budget_s") or time_limit_s)
                    assert score(problem, solution.result).get("feasible", True) is True
                except NoFeasibleSolution:
                    optimal, budget = False, time_limit_s
                samples[name].append((k, time.perf_counter() - started, optimal, budget))
        for name, got in samples.items():
            times = [t for _, t, _, _ in got]
            by_instance: dict[int, list[tuple[float, bool]]] = defaultdict(list)
            for k, t, optimal, _ in got:
                by_instance[k].append((t, optimal))
            easy = {k for k, v in by_instance.items()
                    if statistics.median(t for t, _ in v) <= 0.1 * time_limit_s and
                    sum(o for _, o in v) * 2 > len(v)}
            hits = [(k, t) for k, t, optimal, budget in got if not optimal or t >= 0.9 * budget]
            unreasoned = [h for h in hits if h[0] in easy]
            rows.append({"size": size, "solver": name, "runs": len(got), "p50_s": round(_percentile(times, 0.5), 4),
                         "max_s": round(max(times), 4), "not_optimal": sum(not o for _, _, o, _ in got),
                         "limit_hits": len(hits), "limit_hits_without_reason": len(unreasoned),
                         "limit_hits_without_reason_pct": round(100 * len(unreasoned) / len(got), 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# --- 2. through the stack ------------------------------------------------------------------------

def through_the_stack(milp_jobs: int, pyvrp_jobs: int) -> dict[str, Any]:
    from tests.integration.stack import Stack
    from tests.integration.test_milp_lane import RATIO, outliers, run_sequence

    with tempfile.TemporaryDirectory(prefix="qgate-bench-milp-") as tmp:
        stack = Stack(Path(tmp), QGATE_RATE_LIMITS="off")
        try:
            stack.start()
            token = stack.token(stack.create_client("bench", "quantum:solve solver:heuristic"))
            started = time.perf_counter()
            records = run_sequence(stack, token, milp_jobs, pyvrp_jobs)
            took = time.perf_counter() - started
        finally:
            stack.stop()
    report: dict[str, Any] = {"jobs": len(records), "seconds": round(took, 1),
                              "not_succeeded": sum(r["status"] != "succeeded" for r in records)}
    for kind in ("assignment", "tsp", "cvrp"):
        runs = [r for r in records if r["kind"] == kind and r["runtime_s"] is not None]
        if runs:
            times = [r["runtime_s"] for r in runs]
            walls = [r["wall_s"] for r in runs]
            report[kind] = {"n": len(runs), "solver_p50_s": round(statistics.median(times), 4),
                            "solver_max_s": round(max(times), 4), "http_p50_s": round(statistics.median(walls), 4),
                            "http_max_s": round(max(walls), 4)}
    slow = outliers([r for r in records if r["runtime_s"] is not None])
    report[f"over_{RATIO:g}x_instance_median"] = len(slow)
    report["worst"] = sorted(({"kind": r["kind"], "runtime_s": r["runtime_s"], "median_s": r["median_s"]}
                              for r in slow), key=lambda r: -r["runtime_s"])[:5]
    print(json.dumps(report), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--slow-runs", type=int, default=50, help="runs for 200x20 and 16 nodes")
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--stack-jobs", type=int, default=200, help="assignment and tsp MILPs each")
    parser.add_argument("--stack-pyvrp", type=int, default=20)
    parser.add_argument("--skip-stack", action="store_true")
    args = parser.parse_args()
    random.seed(0)
    report: dict[str, Any] = {"versions": {"highspy": package_version("highspy"), "PuLP": package_version("PuLP")},
                              "time_limit_s": args.time_limit,
                              "side_by_side": side_by_side(args.runs, args.slow_runs, args.time_limit)}
    if not args.skip_stack:
        report["stack"] = through_the_stack(args.stack_jobs, args.stack_pyvrp)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "milp.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
