"""Which solvers each lane runs, and how a problem is matched to one.

Importing this module is cheap (no qiskit, PyVRP or PuLP): the lane modules are imported when a lane's
solvers are first asked for, and `static_verdict` answers the planner from the kinds table and the
lane's published limits alone.
"""

from __future__ import annotations

from typing import Any

from solvers.base import LaneLimits, Solver, Verdict
from solvers.capability import (
    QAOA_KINDS,
    SIM_DEFAULT_MAX_QUBITS,
    check_circuit,
    check_nodes,
    check_qaoa,
    check_qpu_qaoa,
    check_qubo_heuristic,
)

LANES = ("qpu", "sim", "heuristic")
INTERACTIVE_SUFFIX = ".interactive"


def interactive_queue(lane: str) -> str:
    """The queue of a lane's interactive attempts (sync jobs and ``priority: interactive``): consumed
    first by every worker of the lane, and only by the lane's reserved interactive workers."""
    return lane + INTERACTIVE_SUFFIX


def lane_queues(lane: str) -> list[str]:
    """Every queue a lane's attempts wait on, interactive first."""
    return [interactive_queue(lane), lane]


def lane_of_queue(queue: str) -> str | None:
    """The lane a queue serves, or None for a queue that is not a lane's."""
    lane = queue.removesuffix(INTERACTIVE_SUFFIX)
    return lane if lane in LANES else None

LANE_KINDS: dict[str, frozenset[str]] = {
    "qpu": frozenset({"circuit"}) | QAOA_KINDS,
    "sim": frozenset({"circuit"}) | QAOA_KINDS,
    "heuristic": frozenset({"tsp", "cvrp", "assignment", "qubo"}),
}


def _unknown_lane(lane: str) -> str:
    return f"unsupported: unknown lane '{lane}' (lanes: {', '.join(LANES)})"


def _wrong_kind(lane: str, kind: str) -> str:
    return f"unsupported: the {lane} lane does not solve '{kind}'"


def lane_solvers(lane: str, **adapter_options: Any) -> list[Solver]:
    """Fresh solver instances for ``lane``, in order of preference.

    ``adapter_options`` go to the qpu lane's `EmulatedQpu` (backend_name, queue_delay_s, failure_rate,
    max_depth, ...); other lanes take none.
    """
    if lane == "heuristic":
        from solvers.heuristic import AnnealedQubo, CbcAssignment, ExactQubo, MilpTsp, PyVrpRouting

        # Exact before heuristic: MilpTsp refuses tsp above MILP_TSP_MAX_NODES and ExactQubo qubo above
        # QUBO_EXACT_MAX_VARS, so `choose_solver` falls through to PyVRP and annealing.
        return [MilpTsp(), PyVrpRouting(), CbcAssignment(), ExactQubo(), AnnealedQubo()]
    if lane == "sim":
        from solvers.aer import AerCircuit
        from solvers.qaoa import QaoaSolver

        return [AerCircuit(), QaoaSolver()]
    if lane == "qpu":
        from solvers.qpu import EmulatedQpu, QpuCircuitSolver
        from solvers.qpu_qaoa import QpuQaoaSolver

        adapter = adapter_options.pop("adapter", None) or EmulatedQpu(**adapter_options)
        return [QpuCircuitSolver(adapter), QpuQaoaSolver(adapter)]
    raise ValueError(_unknown_lane(lane))


def choose_solver(lane: str, problem: Any, limits: LaneLimits,
                  solvers: list[Solver] | None = None) -> tuple[Solver | None, Verdict]:
    """The first of ``solvers`` (default: the lane's) that takes ``problem``, or None and the reason.

    When several solvers handle the kind but all refuse, the first refusal's reason is returned.
    """
    if lane not in LANES:
        return None, Verdict.no(_unknown_lane(lane))
    candidates = [s for s in (lane_solvers(lane) if solvers is None else solvers) if problem.kind in s.kinds]
    if not candidates:
        return None, Verdict.no(_wrong_kind(lane, problem.kind))
    refusals = []
    for solver in candidates:
        verdict = solver.can_solve(problem, limits)
        if verdict.ok:
            return solver, verdict
        refusals.append(verdict)
    return None, refusals[0]


def static_verdict(lane: str, problem: Any, limits: LaneLimits) -> Verdict:
    """What `choose_solver` would say, without building any backend: for the HTTP ingress's planner.

    Device-specific checks (a QPU's qubit count, depth after transpiling) need the device; the qpu
    lane's workers publish them as ``limits`` and they are applied here from those limits only.
    """
    if lane not in LANES:
        return Verdict.no(_unknown_lane(lane))
    kind = problem.kind
    if kind not in LANE_KINDS[lane]:
        return Verdict.no(_wrong_kind(lane, kind))
    if lane == "sim" and kind in QAOA_KINDS:
        return check_qaoa(problem, limits)
    if lane == "qpu" and kind in QAOA_KINDS:
        return check_qpu_qaoa(problem, limits)
    if kind in ("tsp", "cvrp"):
        return check_nodes(problem, limits)
    if kind == "qubo":
        return check_qubo_heuristic(problem)
    if kind == "circuit":
        default = SIM_DEFAULT_MAX_QUBITS if lane == "sim" else None
        return check_circuit(problem, limits, default_max_qubits=default)
    return Verdict.yes()
