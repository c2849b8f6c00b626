"""Lane health from worker heartbeats in Redis.

Each lane worker writes a key per worker every few seconds, with a time to live of three beats and its
lane limits as value; a lane is alive while at least one such key exists.
"""

from __future__ import annotations

import json
from typing import Any

from routing.plan import LaneStatus
from settings import LANES
from solvers.base import LaneLimits

PREFIX = "qgate:lane:"


def heartbeat_key(lane: str, worker: str) -> str:
    return f"{PREFIX}{lane}:worker:{worker}"


def beat(redis: Any, lane: str, worker: str, limits: LaneLimits, interval_s: int) -> None:
    """Record that ``worker`` serves ``lane`` with ``limits``; expires after three missed beats."""
    redis.set(heartbeat_key(lane, worker), json.dumps(limits.as_dict()), ex=interval_s * 3)


def lane_statuses(redis: Any) -> dict[str, LaneStatus]:
    """Every lane's status; a lane's limits are the most generous its live workers report."""
    statuses: dict[str, LaneStatus] = {}
    for lane in LANES:
        keys = list(redis.scan_iter(match=f"{PREFIX}{lane}:worker:*", count=100))
        values = [v for v in (redis.mget(keys) if keys else []) if v]
        if not values:
            statuses[lane] = LaneStatus(False)
            continue
        limits = [LaneLimits.from_dict(json.loads(v)) for v in values]
        statuses[lane] = LaneStatus(True, _widest(limits))
    return statuses


def _widest(limits: list[LaneLimits]) -> LaneLimits:
    def top(name: str) -> int | None:
        values = [getattr(item, name) for item in limits]
        return None if any(v is None for v in values) else max(values)

    return LaneLimits(top("max_qubits"), top("max_depth"), top("max_nodes"), top("max_shots"))
