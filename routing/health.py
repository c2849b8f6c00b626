"""Lane health from worker heartbeats in Redis.

Each lane keeps a sorted set of its workers scored by when their last beat expires (three beats on),
and a hash of the limits each worker publishes. A lane is alive while one score lies in the future.
Reading every lane is one pipelined round trip, whatever else the keyspace holds.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from routing.plan import LaneStatus
from solvers.base import LaneLimits
from solvers.registry import LANES


def alive_key(lane: str) -> str:
    return f"qgate:lane:{lane}:alive"


def limits_key(lane: str) -> str:
    return f"qgate:lane:{lane}:limits"


def beat(redis: Any, lane: str, worker: str, limits: LaneLimits, interval_s: int, now: float | None = None) -> None:
    """Record that ``worker`` serves ``lane`` with ``limits``; it counts as dead after three missed beats."""
    now = time.time() if now is None else now
    for dead in redis.zrangebyscore(alive_key(lane), "-inf", now):
        leave(redis, lane, dead)
    pipe = redis.pipeline()
    pipe.zadd(alive_key(lane), {worker: now + interval_s * 3})
    pipe.hset(limits_key(lane), worker, json.dumps(limits.as_dict()))
    pipe.execute()


def leave(redis: Any, lane: str, worker: str) -> None:
    pipe = redis.pipeline()
    pipe.zrem(alive_key(lane), worker)
    pipe.hdel(limits_key(lane), worker)
    pipe.execute()


def live_workers(redis: Any, now: float | None = None) -> dict[str, list[str]]:
    now = time.time() if now is None else now
    pipe = redis.pipeline()
    for lane in LANES:
        pipe.zrangebyscore(alive_key(lane), now, "+inf")
    return dict(zip(LANES, pipe.execute()))


def lane_statuses(redis: Any, now: float | None = None) -> dict[str, LaneStatus]:
    """Every lane's status; a lane's limits are the most generous its live workers report."""
    now = time.time() if now is None else now
    pipe = redis.pipeline()
    for lane in LANES:
        pipe.zrangebyscore(alive_key(lane), now, "+inf")
        pipe.hgetall(limits_key(lane))
    replies = pipe.execute()
    statuses = {}
    for lane, alive, published in zip(LANES, replies[::2], replies[1::2]):
        limits = [LaneLimits.from_dict(json.loads(published[w])) for w in alive if w in published]
        statuses[lane] = LaneStatus(True, _widest(limits)) if limits else LaneStatus(False)
    return statuses


class LaneHealth:
    """``lane_statuses`` cached for a fraction of a heartbeat, for the ingress's hot path."""

    def __init__(self, redis: Any, max_age_s: float = 0.5) -> None:
        self.redis, self.max_age_s = redis, max_age_s
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, LaneStatus]] | None = None

    def statuses(self) -> dict[str, LaneStatus]:
        now = time.monotonic()
        with self._lock:
            if self._cached and now - self._cached[0] < self.max_age_s:
                return self._cached[1]
        statuses = lane_statuses(self.redis)
        with self._lock:
            self._cached = (now, statuses)
        return statuses


def _widest(limits: list[LaneLimits]) -> LaneLimits:
    def top(name: str) -> int | None:
        values = [getattr(item, name) for item in limits]
        return None if any(v is None for v in values) else max(values)

    return LaneLimits(**{name: top(name) for name in LaneLimits().as_dict()})
