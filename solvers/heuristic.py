"""The heuristic lane: classical solvers for routing, assignment and QUBOs.

PyVRP, HiGHS (``highspy``, through `solvers.milp`), dwave-samplers and numpy are imported inside ``solve``
only, so constructing these solvers and calling ``can_solve`` stays cheap for the planner.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from solvers.base import LaneLimits, NoFeasibleSolution, Solution, SolverRefused, Verdict
from solvers.capability import (
    check_nodes,
    check_qubo_anneal,
    check_qubo_exact,
    check_tsp_milp,
    package_version,
)
from solvers.milp import INFEASIBLE, Milp, highs_seed, highs_version, solve_milp
from solvers.problems import AssignmentProblem, CvrpProblem, QuboProblem

LANE = "heuristic"

# PyVRP works on integers. Distances, durations, service and window times are multiplied by SCALE:
# distances are rounded (they only steer the search; `solvers.objective` recomputes the cost in floats),
# while travel/service durations and earliest times are rounded up and latest times down, so a schedule
# PyVRP calls on time is also on time in the original floats.
SCALE = 1000
DEFAULT_SEED = 0
TIME_SHARE = 0.85  # the annealing search: the sampler's start-up varies more
MARGIN_SHARE, MARGIN_MAX_S = 0.15, 0.25
MIN_SEARCH_S = 0.05


def _seed(seed: int | None) -> int:
    """PyVRP wants a non-negative 32-bit seed; ``None`` means the fixed default, so runs reproduce."""
    return DEFAULT_SEED if seed is None else seed % 2**32


def _budget(time_limit_s: float, spent_s: float = 0.0) -> float:
    """The time handed to the search: the limit less a margin for setup and scoring (15%, at most
    0.25 s: scoring takes milliseconds, and a larger share would cost quality on long budgets)."""
    margin = min(MARGIN_SHARE * time_limit_s, MARGIN_MAX_S)
    return max(MIN_SEARCH_S, time_limit_s - margin - spent_s)


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

    The search runs for the time limit less a small margin, and on small instances stops earlier once
    ``stall_iterations(n)`` iterations in a row found nothing better: a 10-node tour settles in
    milliseconds and should not hold a worker for the whole budget, while large instances keep
    improving until the clock stops them.
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
                             params=_scaled_params(),
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

        stall = stall_iterations(size)
        criteria = [MaxRuntime(budget_s)] + ([NoImprovement(stall)] if stall else [])
        if self.max_iterations is not None:
            criteria.append(MaxIterations(self.max_iterations))
        return MultipleCriteria(criteria)


def _scaled_params() -> Any:
    """PyVRP's default solve parameters with its penalty bounds in our scaled units.

    Penalties are in distance units: with distances multiplied by SCALE, the default upper bound
    (1e5) is too small to make a capacity violation cost more than the detour that avoids it, and
    PyVRP settles on infeasible routes (seen on CVRPLIB X-n157-k13).
    """
    from pyvrp import PenaltyParams, SolveParams

    defaults = PenaltyParams()
    penalty = PenaltyParams(min_penalty=defaults.min_penalty * SCALE, max_penalty=defaults.max_penalty * SCALE)
    return SolveParams(penalty=penalty)


STALL_MAX_NODES = 50


def stall_iterations(size: int) -> int | None:
    """Non-improving iterations after which PyVRP stops early, for small instances only.

    Below STALL_MAX_NODES PyVRP settles within milliseconds and the rest of a budget would only hold
    a worker. Above it, stopping on a stall cost quality against PyVRP run for the whole budget
    (X-n101-k25 at 5 s: 0.25% above the best-known cost instead of 0.00%), so the clock decides.
    """
    return max(2000, 50 * size) if size < STALL_MAX_NODES else None


def _assignment_precheck(problem: AssignmentProblem) -> None:
    """Obvious infeasibility, reported without starting HiGHS."""
    biggest = max(problem.capacities)
    for load, weight in enumerate(problem.weights):
        if weight > biggest:
            raise NoFeasibleSolution(f"infeasible: load {load} weighs {weight:g} > the largest truck "
                                     f"capacity {biggest:g}")
    if sum(problem.weights) > sum(problem.capacities):
        raise NoFeasibleSolution(f"infeasible: total weight {sum(problem.weights):g} > total capacity "
                                 f"{sum(problem.capacities):g}")


class HighsAssignment:
    """Load-to-truck assignment as a binary program solved by HiGHS, in-process (`solvers.milp`).

    HiGHS runs on one thread with its random seed taken from the request's (``None`` means 0), so the
    same problem, seed and HiGHS version give the same answer unless the clock stops the search. A run
    stopped by the clock (or by ``should_stop``) with an incumbent returns it flagged ``optimal: false``
    with HiGHS's relative ``gap`` and ``lower_bound``; without one it raises `NoFeasibleSolution` (clock)
    or `solvers.milp.MilpCancelled` (``should_stop``).

    The id stays ``pulp-cbc`` from the CBC days, since callers (and tests/unit/test_solvers.py) look the
    solver up by it; ``version`` and the details' ``solver``/``solver_version`` name HiGHS.
    """

    lane = LANE
    id = "pulp-cbc"
    kinds = frozenset({"assignment"})

    def __init__(self) -> None:
        self.version = highs_version()

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return Verdict.yes()

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None,
              should_stop: Callable[[], bool] | None = None) -> Solution:
        """``should_stop`` (e.g. a `threading.Event`'s ``is_set``) is polled while HiGHS searches; once it
        returns true the search ends at HiGHS's next poll (see `solvers.milp.solve_milp`)."""
        started = time.perf_counter()
        _assignment_precheck(problem)
        model, x = self._model(problem)
        budget = _budget(time_limit_s, time.perf_counter() - started)
        run = solve_milp(model, time_limit_s=budget, seed=seed, should_stop=should_stop)
        if run.stop == INFEASIBLE:
            raise NoFeasibleSolution("infeasible: no assignment respects every truck's capacity")
        if run.x is None:
            raise NoFeasibleSolution(f"no feasible assignment found within {budget:.2f} s (HiGHS: {run.status})")
        values = run.x
        assignment = [max(range(len(row)), key=lambda t: values[row[t]]) for row in x]
        details = {**run.details(), "seed": highs_seed(seed), "search_budget_s": round(budget, 4),
                   "runtime_s": round(time.perf_counter() - started, 4)}
        return Solution(result={"assignment": assignment}, details=details)

    @staticmethod
    def _model(problem: AssignmentProblem) -> tuple[Milp, list[list[int]]]:
        """``x[l][t]`` = 1 when load l rides truck t: each load on exactly one truck, capacities kept."""
        loads, trucks = range(len(problem.costs)), range(len(problem.capacities))
        model = Milp()
        x = [[model.add_binary(problem.costs[l][t]) for t in trucks] for l in loads]
        for l in loads:
            model.add_row({x[l][t]: 1.0 for t in trucks}, 1.0, 1.0)
        for t in trucks:
            model.add_row({x[l][t]: problem.weights[l] for l in loads}, upper=problem.capacities[t])
        return model, x


# The registry (and older callers) know the assignment solver by this name.
CbcAssignment = HighsAssignment


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


# --- exact TSP by MILP ---------------------------------------------------------------------------

# Below this search budget HiGHS is not started and the local-search tour is returned as it is: building
# and loading a 16-node model takes a few milliseconds here, leaving HiGHS no time to improve on the tour.
MILP_MIN_SEARCH_S = 0.02


def _tour_cost(d: list[list[float]], tour: list[int]) -> float:
    return sum(d[a][b] for a, b in zip(tour, tour[1:] + tour[:1]))


def _local_search_tour(d: list[list[float]]) -> list[int]:
    """Nearest neighbour from node 0, improved by segment reversals and relocations until none helps.

    Every move is scored by recomputing the whole tour's cost, which keeps it right for asymmetric
    distances (a reversal changes the direction of every edge inside the segment); that is O(n³) per
    pass, negligible at the sizes the MILP takes. The result is HiGHS's starting incumbent.
    """
    n = len(d)
    tour, left = [0], set(range(1, n))
    while left:
        nxt = min(left, key=lambda j: (d[tour[-1]][j], j))
        tour.append(nxt)
        left.remove(nxt)
    best = _tour_cost(d, tour)
    improved = True
    while improved:
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                candidates = [tour[:i] + tour[i:j + 1][::-1] + tour[j + 1:]]
                rest = tour[:i] + tour[i + 1:]
                candidates.append(rest[:j] + [tour[i]] + rest[j:])
                rest = tour[:j] + tour[j + 1:]
                candidates.append(rest[:i] + [tour[j]] + rest[i:])
                for cand in candidates:
                    cost = _tour_cost(d, cand)
                    if cost < best - 1e-12:
                        tour, best, improved = cand, cost, True
    return tour


class MilpTsp:
    """Small TSPs solved to proven optimality by HiGHS (in-process, `solvers.milp`), before PyVRP is tried.

    The model is the Miller-Tucker-Zemlin formulation with the Desrochers-Laporte liftings, on directed
    arcs, so asymmetric and non-Euclidean distance matrices are handled as given. HiGHS starts from a
    local-search tour (`_local_search_tour`), so it always holds a tour: when its time runs out (or
    ``should_stop`` fires) before the proof, the best tour found so far is returned with ``optimal: false``,
    the remaining relative ``gap`` and HiGHS's ``lower_bound``; no `TimeoutError` is raised, since a good
    tour is more useful than a timeout (below ``MILP_MIN_SEARCH_S`` of budget the local-search tour is
    returned). `can_solve` refuses above ``MILP_TSP_MAX_NODES`` with a ``capacity:`` reason, so
    `choose_solver` falls through to PyVRP. HiGHS runs on one thread with the request's seed and is
    deterministic unless stopped by the clock.
    """

    lane = LANE
    id = "milp-tsp-highs"
    kinds = frozenset({"tsp"})

    def __init__(self) -> None:
        self.version = highs_version()

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_tsp_milp(problem, limits)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None,
              should_stop: Callable[[], bool] | None = None) -> Solution:
        """``should_stop`` (e.g. a `threading.Event`'s ``is_set``) is polled while HiGHS searches; once it
        returns true the best tour so far is returned, flagged ``optimal: false`` and ``stop: cancelled``."""
        verdict = check_tsp_milp(problem, LaneLimits())
        if not verdict.ok:
            raise SolverRefused(verdict.reason)
        started = time.perf_counter()
        d = problem.distance_matrix()
        n = problem.size
        tour = _local_search_tour(d)
        details: dict[str, Any] = {"seed": highs_seed(seed), "formulation": "mtz-dl", "nodes": n}
        if n <= 3:
            # Two nodes have one tour; three have two, both tried by the local search.
            details.update(optimal=True, status="Optimal", gap=0.0, trivial=True)
        else:
            # `_budget`'s margin, without its floor: below MILP_MIN_SEARCH_S the local-search tour is the answer
            margin = min(MARGIN_SHARE * time_limit_s, MARGIN_MAX_S)
            budget = time_limit_s - margin - (time.perf_counter() - started)
            if budget < MILP_MIN_SEARCH_S:
                details.update(optimal=False, status="HiGHS not run", gap=None,
                               note=f"search budget {max(budget, 0.0):.3f} s too short to start HiGHS; "
                                    "local-search tour returned")
            else:
                tour, milp_details = self._highs(d, tour, budget, seed, should_stop)
                details.update(milp_details, search_budget_s=round(budget, 4))
        details["runtime_s"] = round(time.perf_counter() - started, 4)
        return Solution(result={"tour": tour}, details=details)

    def _highs(self, d: list[list[float]], start: list[int], budget_s: float, seed: int | None,
               should_stop: Callable[[], bool] | None) -> tuple[list[int], dict[str, Any]]:
        n = len(d)
        model, x, initial = self._model(d, start)
        run = solve_milp(model, time_limit_s=budget_s, seed=seed, should_stop=should_stop, start=initial)
        tour = start
        if run.x is not None:
            succ = {i: j for (i, j), col in x.items() if run.x[col] > 0.5}
            found = [0]
            while len(found) < n and succ.get(found[-1], 0) != 0:
                found.append(succ[found[-1]])
            if len(found) == n and sorted(found) == list(range(n)) and \
                    _tour_cost(d, found) <= _tour_cost(d, start) + 1e-9:
                tour = found
        return tour, run.details()

    @staticmethod
    def _model(d: list[list[float]], start: list[int]) -> tuple[Milp, dict[tuple[int, int], int], list[float]]:
        """MTZ with Desrochers-Laporte lifting, and ``start`` as a starting solution for HiGHS.

        ``u[i]`` is node i's position in the tour (1..n-1, the depot 0 excluded).
        """
        n = len(d)
        model = Milp()
        x = {(i, j): model.add_binary(d[i][j]) for i in range(n) for j in range(n) if i != j}
        u = {i: model.add_col(0.0, 1.0, n - 1.0) for i in range(1, n)}
        for k in range(n):
            model.add_row({x[k, j]: 1.0 for j in range(n) if j != k}, 1.0, 1.0)  # out of k
            model.add_row({x[i, k]: 1.0 for i in range(n) if i != k}, 1.0, 1.0)  # into k
        for i in range(1, n):
            model.add_row({u[i]: 1.0, x[0, i]: n - 2.0}, upper=n - 1.0)  # first after the depot
            model.add_row({u[i]: 1.0, x[i, 0]: -(n - 2.0)}, lower=1.0)  # last before it
            for j in range(1, n):
                if i != j:
                    model.add_row({u[i]: 1.0, u[j]: -1.0, x[i, j]: n - 1.0, x[j, i]: n - 3.0}, upper=n - 2.0)
        initial = [0.0] * model.num_cols
        succ = {a: b for a, b in zip(start, start[1:] + start[:1])}
        for (i, j), col in x.items():
            initial[col] = 1.0 if succ[i] == j else 0.0
        for pos, node in enumerate(start[1:], start=1):
            initial[u[node]] = float(pos)
        return model, x, initial


# --- QUBO by simulated annealing ------------------------------------------------------------------

ANNEAL_DEFAULT_SWEEPS = 1000
ANNEAL_MAX_READS = 32
ANNEAL_MIN_SWEEPS = 50
# Cost model for planning a run, about three times the timings measured on the reference machine
# (2 cores): a sweep costs ~7-20 ns per variable plus ~0.1-0.4 ns per coupling, and dwave-samplers'
# set-up (default temperature range) ~0.8 µs per coupling plus ~1 ms.
ANNEAL_S_PER_VAR_SWEEP = 20e-9
ANNEAL_S_PER_TERM_SWEEP = 1e-9
ANNEAL_SETUP_S = 0.005
ANNEAL_SETUP_S_PER_TERM = 2.5e-6


def anneal_plan(n: int, couplings: int, budget_s: float) -> tuple[int, int]:
    """(num_reads, num_sweeps) expected to fit ``budget_s``, from the conservative cost model above.

    Sweeps come first (up to ``ANNEAL_DEFAULT_SWEEPS``), then reads (up to ``ANNEAL_MAX_READS``). The plan
    depends on the problem's size and the budget only, never on a timing taken during the call, so the
    same problem, seed and time limit give the same answer; once the budget exceeds what the caps need,
    the plan, and so the answer, no longer depends on the time limit either.
    """
    per_sweep = ANNEAL_S_PER_VAR_SWEEP * n + ANNEAL_S_PER_TERM_SWEEP * couplings
    available = budget_s - ANNEAL_SETUP_S - ANNEAL_SETUP_S_PER_TERM * couplings
    total = int(available / per_sweep) if available > 0 else 0
    if total < ANNEAL_MIN_SWEEPS:
        raise TimeoutError(f"simulated annealing on n={n} with {couplings} couplings needs more than the "
                           f"{max(budget_s, 0.0):.3f} s search budget for even {ANNEAL_MIN_SWEEPS} sweeps")
    sweeps = min(ANNEAL_DEFAULT_SWEEPS, total)
    return max(1, min(ANNEAL_MAX_READS, total // sweeps)), sweeps


def _qubo_bqm(problem: QuboProblem) -> Any:
    """A dimod BINARY model with variables 0..n-1; duplicate and (j, i) terms are summed, as in scoring."""
    import dimod
    import numpy as np

    linear = np.zeros(problem.n)
    if problem.terms:
        t = np.asarray(problem.terms, dtype=np.float64)
        i, j, w = t[:, 0].astype(np.int64), t[:, 1].astype(np.int64), t[:, 2]
        diag = i == j
        np.add.at(linear, i[diag], w[diag])
        off = ~diag
        rows, cols, weights = np.minimum(i[off], j[off]), np.maximum(i[off], j[off]), w[off]
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
        weights = np.zeros(0)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(linear, (rows, cols, weights), 0.0, dimod.BINARY)


class AnnealedQubo:
    """QUBOs beyond exact enumeration by dwave-samplers' simulated annealing (no optimality proof).

    ``num_reads`` and ``num_sweeps`` are planned by `anneal_plan` to fit ``TIME_SHARE`` of the time limit;
    if not even one short read fits, `TimeoutError`. As a guard for a machine slower than the cost model,
    the sampler is also interrupted between reads once the search budget is spent (the details then say
    ``interrupted: true`` and the run is no longer guaranteed reproducible). The seed (``None`` means 0)
    fixes the answer otherwise.
    """

    lane = LANE
    id = "sa-qubo"
    kinds = frozenset({"qubo"})

    def __init__(self) -> None:
        self.version = package_version("dwave-samplers")

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        return check_qubo_anneal(problem)

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        verdict = check_qubo_anneal(problem)
        if not verdict.ok:
            raise SolverRefused(verdict.reason)
        started = time.perf_counter()
        deadline = started + TIME_SHARE * time_limit_s
        # a lower bound on the cost (no couplings), checked before the import and the model are paid for
        anneal_plan(problem.n, 0, TIME_SHARE * time_limit_s)
        from dwave.samplers import SimulatedAnnealingSampler

        # the sampler takes seeds below 2**32 - 1
        seed = (DEFAULT_SEED if seed is None else seed) % (2**32 - 1)
        bqm = _qubo_bqm(problem)
        couplings = bqm.num_interactions
        details: dict[str, Any] = {"sampler": "SimulatedAnnealingSampler", "seed": seed, "optimal": False}
        if not any(bqm.linear.values()) and not any(bqm.quadratic.values()):
            details.update(num_reads=0, num_sweeps=0, energy=0.0, trivial=True,
                           runtime_s=round(time.perf_counter() - started, 4))
            return Solution(result={"bits": [0] * problem.n}, details=details)
        num_reads, num_sweeps = anneal_plan(problem.n, couplings, deadline - time.perf_counter())
        sampleset = SimulatedAnnealingSampler().sample(
            bqm, num_reads=num_reads, num_sweeps=num_sweeps, seed=seed,
            interrupt_function=lambda: time.perf_counter() > deadline)
        best = sampleset.first
        bits = [int(best.sample[i]) for i in range(problem.n)]
        details.update(num_reads=num_reads, num_sweeps=num_sweeps, reads_done=len(sampleset),
                       interrupted=len(sampleset) < num_reads, energy=float(best.energy),
                       couplings=couplings, runtime_s=round(time.perf_counter() - started, 4))
        return Solution(result={"bits": bits}, details=details)
