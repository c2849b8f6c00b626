"""The heuristic lane: classical solvers for routing, assignment and small QUBOs.

PyVRP, PuLP and numpy are imported inside ``solve`` only, so constructing these solvers and calling
``can_solve`` stays cheap for the planner.
"""

from __future__ import annotations

import math
import time
from typing import Any

from solvers.base import LaneLimits, NoFeasibleSolution, Solution, SolverRefused, Verdict
from solvers.capability import check_nodes, check_qubo_exact, package_version
from solvers.problems import AssignmentProblem, CvrpProblem, QuboProblem

LANE = "heuristic"

# PyVRP works on integers. Distances, durations, service and window times are multiplied by SCALE:
# distances are rounded (they only steer the search; `solvers.objective` recomputes the cost in floats),
# while travel/service durations and earliest times are rounded up and latest times down, so a schedule
# PyVRP calls on time is also on time in the original floats.
SCALE = 1000
DEFAULT_SEED = 0
TIME_SHARE = 0.85
MIN_SEARCH_S = 0.05


def _seed(seed: int | None) -> int:
    """PyVRP wants a non-negative 32-bit seed; ``None`` means the fixed default, so runs reproduce."""
    return DEFAULT_SEED if seed is None else seed % 2**32


def _budget(time_limit_s: float, spent_s: float = 0.0) -> float:
    """The share of the time limit handed to the search, keeping a margin for setup and scoring."""
    return max(MIN_SEARCH_S, TIME_SHARE * time_limit_s - spent_s)


def _scale_matrix(rows: list[list[float]], how: str) -> Any:
    import numpy as np

    from pyvrp.constants import MAX_VALUE

    m = np.asarray(rows, dtype=np.float64) * SCALE
    m = np.ceil(m - 1e-6) if how == "ceil" else np.rint(m)
    if m.size and m.max() > MAX_VALUE:
        raise SolverRefused(f"capacity: values up to {m.max() / SCALE:g} are too large for PyVRP "
                            f"at scale {SCALE}")
    out = m.astype(np.int64)
    np.fill_diagonal(out, 0)
    return out


def _scaled_time(value: float, how: str) -> int:
    from pyvrp.constants import MAX_VALUE

    scaled = value * SCALE
    scaled = math.ceil(scaled - 1e-6) if how == "ceil" else math.floor(scaled + 1e-6)
    return min(max(scaled, 0), MAX_VALUE)


def _build_data(problem: Any) -> Any:
    """PyVRP ProblemData for a tsp or cvrp problem: node 0 is the depot, node i is client i-1.

    Entities come from `pyvrp.Model`; the n×n matrices are then set in one go with numpy rather than
    as n² `Model.add_edge` calls, which would be slow and memory-hungry for large instances.
    """
    from pyvrp import Model

    cvrp = isinstance(problem, CvrpProblem)
    timed = cvrp and problem.has_time_windows
    n = problem.size
    coords = problem.locations or [(0.0, 0.0)] * n
    windows = problem.time_windows if timed else None
    service = (problem.service_times or [0.0] * n) if timed else [0.0] * n

    model = Model()
    locs = [model.add_location(x=float(x), y=float(y)) for x, y in coords]
    depot_tw: dict[str, int] = {}
    if windows:
        depot_tw = {"tw_early": _scaled_time(windows[0][0], "ceil"),
                    "tw_late": _scaled_time(windows[0][1], "floor")}
    model.add_depot(locs[0], **depot_tw)
    for i in range(1, n):
        client: dict[str, Any] = {"delivery": [problem.demands[i]] if cvrp else []}
        if windows:
            client.update(tw_early=_scaled_time(windows[i][0], "ceil"),
                          tw_late=_scaled_time(windows[i][1], "floor"),
                          service_duration=_scaled_time(service[i], "ceil"))
        model.add_client(locs[i], **client)
    if cvrp:
        model.add_vehicle_type(num_available=problem.num_vehicles, capacity=[problem.vehicle_capacity],
                               **depot_tw)
    else:
        model.add_vehicle_type(num_available=1)

    distances = _scale_matrix(problem.distance_matrix(), "round")
    durations = _scale_matrix(problem.duration_matrix(), "ceil") if timed else distances * 0
    return model.data().replace(distance_matrices=[distances], duration_matrices=[durations])


class PyVrpRouting:
    """TSP and CVRP (optionally with time windows) by PyVRP's iterated local search.

    The search runs for ``TIME_SHARE`` of the time limit, and stops earlier once ``stall_iterations(n)``
    iterations in a row found nothing better: a 10-node tour settles in milliseconds and should not hold
    a worker for the whole budget, while large instances keep improving until the clock stops them.
    It also stops after ``max_iterations`` when that is set: a run stopped by iterations (or by the
    stall rule) is reproducible for a given seed, whereas a run stopped by the clock is only
    reproducible when the search has converged before the deadline.
    """

    lane = LANE
    id = "pyvrp"
    kinds = frozenset({"tsp", "cvrp"})

    def __init__(self, max_iterations: int | None = None) -> None:
        self.version = package_version("pyvrp")
        self.max_iterations = max_iterations

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_nodes(problem, limits)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        from pyvrp import solve as pyvrp_solve

        started = time.perf_counter()
        seed = _seed(seed)
        if problem.kind == "tsp" and problem.size == 2:
            details = {"iterations": 0, "seed": seed, "runtime_s": 0.0, "feasible": True, "trivial": True}
            return Solution(result={"tour": [0, 1]}, details=details)
        data = _build_data(problem)
        budget = _budget(time_limit_s, time.perf_counter() - started)
        result = pyvrp_solve(data, stop=self._stop(budget, problem.size), seed=seed, collect_stats=False,
                             display=False)
        routes = [[act.idx + 1 for act in route if act.is_client()] for route in result.best.routes()]
        routes = [r for r in routes if r]
        if problem.kind == "tsp":
            answer: dict[str, Any] = {"tour": [0, *(c for r in routes for c in r)]}
        else:
            answer = {"routes": routes}
        details = {
            "iterations": result.num_iterations,
            "seed": seed,
            "runtime_s": round(time.perf_counter() - started, 4),
            "search_budget_s": round(budget, 4),
            "feasible": bool(result.is_feasible()),
            "scale": SCALE,
        }
        return Solution(result=answer, details=details)

    def _stop(self, budget_s: float, size: int) -> Any:
        from pyvrp.stop import MaxIterations, MaxRuntime, MultipleCriteria, NoImprovement

        criteria = [MaxRuntime(budget_s), NoImprovement(stall_iterations(size))]
        if self.max_iterations is not None:
            criteria.append(MaxIterations(self.max_iterations))
        return MultipleCriteria(criteria)


def stall_iterations(size: int) -> int:
    """Non-improving iterations after which PyVRP stops; grows with the instance."""
    return max(2000, 50 * size)


def _assignment_precheck(problem: AssignmentProblem) -> None:
    """Obvious infeasibility, reported without starting CBC."""
    biggest = max(problem.capacities)
    for load, weight in enumerate(problem.weights):
        if weight > biggest:
            raise NoFeasibleSolution(f"infeasible: load {load} weighs {weight:g} > the largest truck "
                                     f"capacity {biggest:g}")
    if sum(problem.weights) > sum(problem.capacities):
        raise NoFeasibleSolution(f"infeasible: total weight {sum(problem.weights):g} > total capacity "
                                 f"{sum(problem.capacities):g}")


class CbcAssignment:
    """Load-to-truck assignment as a binary program solved by CBC (bundled with PuLP).

    CBC is deterministic for a given model, so the seed is recorded but not needed for reproducibility.
    """

    lane = LANE
    id = "pulp-cbc"
    kinds = frozenset({"assignment"})

    def __init__(self) -> None:
        self.version = package_version("PuLP")

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return Verdict.yes()

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        import pulp

        started = time.perf_counter()
        _assignment_precheck(problem)
        model, x = self._model(problem)
        budget = _budget(time_limit_s, time.perf_counter() - started)
        model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=budget, threads=1))
        status = pulp.LpStatus[model.status]
        if model.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            if model.status == pulp.LpStatusInfeasible:
                raise NoFeasibleSolution("infeasible: no assignment respects every truck's capacity")
            raise NoFeasibleSolution(f"no feasible assignment found within {budget:.2f} s (CBC: {status})")
        assignment = [next(t for t, var in enumerate(row) if (var.value() or 0) > 0.5) for row in x]
        details = {
            "optimal": model.sol_status == pulp.LpSolutionOptimal,
            "status": status,
            "seed": seed,
            "runtime_s": round(time.perf_counter() - started, 4),
        }
        return Solution(result={"assignment": assignment}, details=details)

    @staticmethod
    def _model(problem: AssignmentProblem) -> tuple[Any, list[list[Any]]]:
        import pulp

        loads, trucks = range(len(problem.costs)), range(len(problem.capacities))
        model = pulp.LpProblem("assignment", pulp.LpMinimize)
        # PuLP ≥ 3.3 creates variables on the model (the PuLP 4 way); older versions only have LpVariable
        new_var = getattr(model, "add_variable", None) or pulp.LpVariable
        x = [[new_var(f"x_{l}_{t}", cat=pulp.LpBinary) for t in trucks] for l in loads]
        model += pulp.lpSum(problem.costs[l][t] * x[l][t] for l in loads for t in trucks)
        for l in loads:
            model += pulp.lpSum(x[l]) == 1, f"load_{l}"
        for t in trucks:
            model += pulp.lpSum(problem.weights[l] * x[l][t] for l in loads) <= problem.capacities[t], \
                f"truck_{t}"
        return model, x


class ExactQubo:
    """Exact QUBO minimisation by enumerating all 2**n bit vectors (n ≤ 20), in chunks with numpy.

    Vector k sets ``x_i = (k >> (n-1-i)) & 1``, so k runs through bit vectors in lexicographic order
    and ties go to the lexicographically smallest vector: the answer is deterministic.
    """

    lane = LANE
    id = "exact-qubo"
    version = "1"
    kinds = frozenset({"qubo"})
    chunk_bits = 15

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_qubo_exact(problem)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        verdict = check_qubo_exact(problem)
        if not verdict.ok:
            raise SolverRefused(verdict.reason)
        started = time.perf_counter()
        best_k, best_energy = self._search(problem, started + time_limit_s)
        bits = [(best_k >> (problem.n - 1 - i)) & 1 for i in range(problem.n)]
        details = {"states": 2**problem.n, "optimal": True, "seed": seed,
                   "runtime_s": round(time.perf_counter() - started, 4)}
        return Solution(result={"bits": bits}, details=details)

    def _search(self, problem: QuboProblem, deadline: float) -> tuple[int, float]:
        import numpy as np

        n = problem.n
        q = np.zeros((n, n))
        for i, j, w in problem.terms:
            q[i, j] += w
        shifts = np.arange(n - 1, -1, -1, dtype=np.int64)
        size = 1 << min(n, self.chunk_bits)
        best_k, best_energy = 0, math.inf
        for start in range(0, 1 << n, size):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"exact enumeration of 2**{n} states exceeded the time limit")
            ks = np.arange(start, start + size, dtype=np.int64)
            x = ((ks[:, None] >> shifts) & 1).astype(np.float64)
            energies = np.einsum("ki,ki->k", x @ q, x)
            k = int(np.argmin(energies))
            if energies[k] < best_energy:
                best_k, best_energy = start + k, float(energies[k])
        return best_k, best_energy
