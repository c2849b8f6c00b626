"""Lane planning: order from the requested lane, skips with reasons for scope, kind, capacity, health, cost."""

from __future__ import annotations

import fakeredis

from routing.health import beat, lane_statuses
from routing.plan import LaneStatus, plan_lanes
from solvers.base import LaneLimits
from solvers.problems import parse_problem

ALL = frozenset({"solver:qpu", "solver:sim", "solver:heuristic"})
UP = {"qpu": LaneStatus(True, LaneLimits(max_qubits=5)), "sim": LaneStatus(True, LaneLimits(max_qubits=24)),
      "heuristic": LaneStatus(True)}


def _qasm(qubits: int) -> dict:
    body = f'OPENQASM 2.0; include "qelib1.inc"; qreg q[{qubits}]; creg c[{qubits}]; h q[0]; measure q -> c;'
    return {"kind": "circuit", "qasm": body, "shots": 10}


def _plan(problem: dict, requested: str = "auto", scopes=ALL, status=UP, **kwargs) -> list[tuple[str, str, str]]:
    steps = plan_lanes(parse_problem(problem), requested, frozenset(scopes), status, **kwargs)
    return [(s.lane, s.action, s.reason) for s in steps]


def test_auto_tries_every_lane_that_can_hold_a_circuit() -> None:
    plan = _plan(_qasm(2))
    assert [(lane, action) for lane, action, _ in plan] == [("qpu", "try"), ("sim", "try"), ("heuristic", "skip")]
    assert plan[2][2].startswith("unsupported")


def test_requested_lane_starts_the_order() -> None:
    assert [lane for lane, *_ in _plan(_qasm(2), "sim")] == ["sim", "heuristic"]


def test_capacity_skips_name_the_limit() -> None:
    plan = _plan(_qasm(8))
    assert plan[0] == ("qpu", "skip", "capacity: 8 qubits > 5")
    assert plan[1][1] == "try"


def test_scope_health_and_cost_skips() -> None:
    tsp = {"kind": "tsp", "distances": [[0, 1], [1, 0]]}
    assert _plan(tsp, scopes={"solver:qpu"})[-1] == ("heuristic", "skip", "scope: the client lacks solver:heuristic")
    down = {**UP, "sim": LaneStatus(False)}
    assert _plan(_qasm(2), status=down)[1] == ("sim", "skip", "health: no live worker on the sim queue")
    costly = _plan(_qasm(2), lane_cost_usd={"qpu": 1.5}, standard_tier_max_usd=1.0)
    assert costly[0][1] == "skip" and costly[0][2].startswith("cost tier")
    premium = _plan(_qasm(2), cost_tier="premium", lane_cost_usd={"qpu": 1.5}, standard_tier_max_usd=1.0)
    assert premium[0][1] == "try"


def test_lane_health_comes_from_heartbeats() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    assert not lane_statuses(redis)["qpu"].alive
    beat(redis, "qpu", "qpu@a", LaneLimits(max_qubits=5), interval_s=5)
    beat(redis, "qpu", "qpu@b", LaneLimits(max_qubits=27), interval_s=5)
    status = lane_statuses(redis)
    assert status["qpu"].alive and status["qpu"].limits.max_qubits == 27 and not status["sim"].alive
    beat(redis, "sim", "sim@old", LaneLimits(), interval_s=5, now=0)  # three beats missed long ago
    assert not lane_statuses(redis)["sim"].alive
