"""Check a solver's answer and compute its objective ourselves.

A solver's own cost figure is never trusted or copied: `score` validates the structure of the raw result
(every node visited once, indices in range, bitstrings of the right width, ...) and returns a new dict
holding the solution fields plus the cost, energy and feasibility that we recomputed from the problem.
Structural errors raise `InvalidSolution`; a well-formed but infeasible answer (over capacity, late) is
returned with ``feasible: False`` and human-readable ``violations``.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

from solvers.problems import (
    AssignmentProblem,
    CircuitProblem,
    CvrpProblem,
    QuboProblem,
    TspProblem,
    parse_problem,
)

# Relative slack for comparing floats against capacities and time windows: sums of floats such as
# 0.1 + 0.2 must not turn an exactly-full truck or an on-time arrival into a violation.
_EPS = 1e-9


class InvalidSolution(ValueError):
    """The solver's result does not have the structure its problem kind requires."""


def score(problem: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Validate ``result`` for ``problem`` (a model or its raw dict) and return a new, scored dict."""
    if isinstance(problem, dict):
        problem = parse_problem(problem)
    if not isinstance(result, dict):
        raise InvalidSolution(f"the result must be an object, got {type(result).__name__}")
    scorer = _SCORERS.get(type(problem))
    if scorer is None:
        raise TypeError(f"cannot score a {type(problem).__name__}")
    scored = scorer(problem, result)
    _require_finite(scored, "result")
    return scored


def loggable(value: Any) -> Any:
    """A copy of a solver's free-form details that JSON and the audit log can carry: a non-finite float
    becomes None and an integer beyond ±2**53 becomes a float, e.g. an energy that overflowed in a QAOA
    penalty encoding. Details inform; they are never worth losing the answer or the log over."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else float(value)
    if isinstance(value, dict):
        return {str(k): loggable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [loggable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return loggable(value.item())
    if hasattr(value, "tolist"):  # numpy arrays
        return loggable(value.tolist())
    return str(value)


def _require_finite(value: Any, where: str) -> None:
    """A computed figure that overflowed (inf) or is undefined (nan) is no answer: it can be neither
    compared with another lane's nor written as JSON, so the attempt fails instead."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidSolution(f"{where} is {value}, not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _require_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _require_finite(item, f"{where}[{i}]")


def _field(result: dict[str, Any], name: str, kind: type, kind_name: str) -> Any:
    if name not in result:
        raise InvalidSolution(f"the result has no '{name}'")
    value = result[name]
    if not isinstance(value, kind):
        raise InvalidSolution(f"'{name}' must be {kind_name}, got {type(value).__name__}")
    return value


def _int(value: Any, where: str) -> int:
    """An integer index; bools and floats are rejected even when they look whole."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidSolution(f"{where} must be an integer, got {value!r}")
    return int(value)


def _exceeds(value: float, bound: float) -> bool:
    return value > bound + _EPS * max(1.0, abs(bound))


def _score_tsp(problem: TspProblem, result: dict[str, Any]) -> dict[str, Any]:
    raw = _field(result, "tour", list, "a list of node indices")
    n = problem.size
    tour = [_int(v, f"tour[{i}]") for i, v in enumerate(raw)]
    if not tour or tour[0] != 0:
        raise InvalidSolution("the tour must start at node 0")
    seen: set[int] = set()
    for i, node in enumerate(tour):
        if not 0 <= node < n:
            raise InvalidSolution(f"tour[{i}] = {node} is out of range 0..{n - 1}")
        if node in seen:
            hint = " (do not repeat node 0 at the end: the return is implied)" if node == 0 else ""
            raise InvalidSolution(f"node {node} is visited more than once{hint}")
        seen.add(node)
    if len(tour) != n:
        missing = sorted(set(range(n)) - seen)
        raise InvalidSolution(f"the tour misses nodes {missing[:10]}")
    d = problem.distance_matrix()
    cost = sum(d[a][b] for a, b in zip(tour, tour[1:] + tour[:1]))
    return {"tour": tour, "cost": float(cost)}


def _cvrp_routes(problem: CvrpProblem, raw: list[Any]) -> list[list[int]]:
    n = problem.size
    seen: set[int] = set()
    routes: list[list[int]] = []
    for r, route in enumerate(raw):
        if not isinstance(route, list):
            raise InvalidSolution(f"routes[{r}] must be a list of customer indices")
        stops = [_int(v, f"routes[{r}][{i}]") for i, v in enumerate(route)]
        for i, node in enumerate(stops):
            if node == 0:
                raise InvalidSolution(f"routes[{r}][{i}] is the depot: routes list customers only")
            if not 0 < node < n:
                raise InvalidSolution(f"routes[{r}][{i}] = {node} is out of range 1..{n - 1}")
            if node in seen:
                raise InvalidSolution(f"customer {node} appears more than once")
            seen.add(node)
        if stops:
            routes.append(stops)
    missing = sorted(set(range(1, n)) - seen)
    if missing:
        raise InvalidSolution(f"customers {missing[:10]} are on no route")
    return routes


def _route_cost(d: list[list[float]], route: list[int]) -> float:
    path = [0, *route, 0]
    return sum(d[a][b] for a, b in zip(path, path[1:]))


def _late_stops(problem: CvrpProblem, t: list[list[float]], r: int, route: list[int]) -> list[str]:
    """Simulate one vehicle leaving the depot at its earliest time; waiting at early arrivals is allowed.

    The depot's latest time bounds the return. ``service_times[0]`` (at the depot) is not applied.
    """
    windows = problem.time_windows or []
    service = problem.service_times or [0.0] * problem.size
    late: list[str] = []
    clock = windows[0][0]
    for prev, node in zip([0, *route], [*route, 0]):
        arrival = clock + t[prev][node]
        earliest, latest = windows[node]
        if _exceeds(arrival, latest):
            where = "returns to the depot" if node == 0 else f"arrives at node {node}"
            late.append(f"routes[{r}] {where} at {arrival:g}, after its latest time {latest:g}")
        clock = max(arrival, earliest) + (service[node] if node else 0.0)
    return late


def _score_cvrp(problem: CvrpProblem, result: dict[str, Any]) -> dict[str, Any]:
    routes = _cvrp_routes(problem, _field(result, "routes", list, "a list of routes"))
    d = problem.distance_matrix()
    violations: list[str] = []
    if len(routes) > problem.num_vehicles:
        violations.append(f"{len(routes)} routes > {problem.num_vehicles} vehicles")
    for r, route in enumerate(routes):
        load = sum(problem.demands[c] for c in route)
        if load > problem.vehicle_capacity:
            violations.append(f"routes[{r}] carries {load} > capacity {problem.vehicle_capacity}")
    if problem.has_time_windows:
        durations = problem.duration_matrix()
        for r, route in enumerate(routes):
            violations.extend(_late_stops(problem, durations, r, route))
    scored: dict[str, Any] = {
        "routes": routes,
        "cost": float(sum(_route_cost(d, route) for route in routes)),
        "feasible": not violations,
    }
    if violations:
        scored["violations"] = violations
    return scored


def _score_assignment(problem: AssignmentProblem, result: dict[str, Any]) -> dict[str, Any]:
    raw = _field(result, "assignment", list, "a list with one truck index per load")
    loads, trucks = len(problem.costs), len(problem.capacities)
    if len(raw) != loads:
        raise InvalidSolution(f"'assignment' must have {loads} entries (one per load), got {len(raw)}")
    assignment = [_int(v, f"assignment[{i}]") for i, v in enumerate(raw)]
    for load, truck in enumerate(assignment):
        if not 0 <= truck < trucks:
            raise InvalidSolution(f"assignment[{load}] = {truck} is out of range 0..{trucks - 1}")
    used = [0.0] * trucks
    for load, truck in enumerate(assignment):
        used[truck] += problem.weights[load]
    violations = [f"truck {t} carries {used[t]:g} > capacity {cap:g}"
                  for t, cap in enumerate(problem.capacities) if _exceeds(used[t], cap)]
    cost = sum(problem.costs[load][truck] for load, truck in enumerate(assignment))
    scored: dict[str, Any] = {"assignment": assignment, "cost": float(cost), "feasible": not violations}
    if violations:
        scored["violations"] = violations
    return scored


def _score_qubo(problem: QuboProblem, result: dict[str, Any]) -> dict[str, Any]:
    raw = _field(result, "bits", list, "a list of 0/1 values")
    if len(raw) != problem.n:
        raise InvalidSolution(f"'bits' must have {problem.n} entries, got {len(raw)}")
    bits = [_int(v, f"bits[{i}]") for i, v in enumerate(raw)]
    for i, b in enumerate(bits):
        if b not in (0, 1):
            raise InvalidSolution(f"bits[{i}] must be 0 or 1, got {b}")
    energy = math.fsum(w * bits[i] * bits[j] for i, j, w in problem.terms)
    return {"bits": bits, "energy": float(energy)}


def _score_circuit(problem: CircuitProblem, result: dict[str, Any]) -> dict[str, Any]:
    from solvers.circuits import parse_qasm

    raw = _field(result, "counts", dict, "an object mapping bitstrings to counts")
    width = parse_qasm(problem.qasm).num_clbits
    counts: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise InvalidSolution(f"count key {key!r} must be a string")
        bits = key.replace(" ", "")
        if len(bits) != width or set(bits) - {"0", "1"}:
            raise InvalidSolution(f"count key {key!r} must be {width} characters of 0/1")
        if bits in counts:
            raise InvalidSolution(f"count key {key!r} repeats outcome {bits}")
        n = _int(value, f"counts[{key!r}]")
        if n < 0:
            raise InvalidSolution(f"counts[{key!r}] must be non-negative, got {n}")
        counts[bits] = n
    total = sum(counts.values())
    if total != problem.shots:
        raise InvalidSolution(f"counts sum to {total}, expected {problem.shots} shots")
    return {"counts": dict(sorted(counts.items()))}


_SCORERS = {
    TspProblem: _score_tsp,
    CvrpProblem: _score_cvrp,
    AssignmentProblem: _score_assignment,
    QuboProblem: _score_qubo,
    CircuitProblem: _score_circuit,
}
