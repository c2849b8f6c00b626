"""The calibration canary's schedule, its series in Redis and its hold on the lane's breaker.

Scheduling needs no beat process: each watchdog sweep tries ``claim_run`` (a ``SET NX PX period``), and
the one watchdog that wins sends one canary task to the lane's batch queue, so the canary waits behind
interactive attempts and never holds a QPU slot a sync job is waiting for. The key outlives any
process, so restarts neither skip nor double a period.

Each reading is kept (newest first, ``keep`` of them) and audited (``lane.canary``). A fidelity below
``min_fidelity`` opens the lane's breaker, whatever its state, with the figure in the reason
(``breaker: open since … (canary fidelity 0.61 < 0.80 on fake_manila)``); while readings stay low every
one of them restarts the cool-down, so a drifted device is not half-opened into by job probes between
two canaries. A reading back above the threshold changes nothing by itself: the breaker goes through
its usual half-open probes. A canary that could not run (provider error, timeout) is recorded with its
error and leaves the breaker alone: failing attempts already count against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from audit.channel import emit
from routing.breaker import Breaker, breaker_key, publish, trip
from telemetry.metrics import set_gauge


def series_key(lane: str) -> str:
    return f"qgate:lane:{lane}:canary"


def due_key(lane: str) -> str:
    return f"qgate:lane:{lane}:canary:due"


@dataclass(frozen=True)
class CanaryConfig:
    period_s: float = 0.0  # 0: no canary
    min_fidelity: float = 0.75
    qubits: int = 3
    shots: int = 1000
    keep: int = 1440  # a day of one-minute readings

    @property
    def enabled(self) -> bool:
        return self.period_s > 0

    def time_limit_s(self) -> float:
        """A run may take up to half its period (at least 5 s): the next one must not find it running."""
        return max(5.0, self.period_s / 2)


def claim_run(redis: Any, lane: str, config: CanaryConfig) -> bool:
    """True for exactly one caller per period, fleet-wide."""
    if not config.enabled:
        return False
    return bool(redis.set(due_key(lane), "1", nx=True, px=max(int(config.period_s * 1000), 1)))


def low_fidelity_reason(fidelity: float, config: CanaryConfig, backend: str) -> str:
    return f"canary fidelity {fidelity:.2f} < {config.min_fidelity:.2f} on {backend}"


def record(redis: Any, lane: str, reading: dict[str, Any], config: CanaryConfig, now: float) -> str | None:
    """Keep and audit ``reading`` (a `CanaryReading` as a dict); open the breaker when its fidelity is low.
    Returns the breaker's new state when the reading changed it, else None. One MULTI, the breaker
    WATCHed as the attempts' conclusions do."""
    key = breaker_key(lane)

    def apply(pipe: Any) -> str | None:
        breaker = Breaker.loads(pipe.get(key))
        fidelity = reading.get("fidelity")
        after, change = breaker, None
        if fidelity is not None and fidelity < config.min_fidelity:
            after, change = trip(breaker, now, low_fidelity_reason(fidelity, config, reading.get("backend", lane)))
        pipe.multi()
        pipe.lpush(series_key(lane), json.dumps(reading, separators=(",", ":")))
        pipe.ltrim(series_key(lane), 0, config.keep - 1)
        emit(pipe, "lane.canary", lane=lane, min_fidelity=config.min_fidelity, **reading)
        if fidelity is not None:
            set_gauge(pipe, "canary_fidelity", (lane,), fidelity)
        # Every run, scored or not: an alert can tell a canary that stopped running from a steady figure.
        set_gauge(pipe, "canary_last_run", (lane,), float(reading.get("at", now)))
        if after is not breaker:
            pipe.set(key, after.dumps())
        if change:
            publish(pipe, lane, change)
        return after.state if after.state != breaker.state else None

    return redis.transaction(apply, key, value_from_callable=True)


def series(redis: Any, lane: str, limit: int = 60) -> list[dict[str, Any]]:
    """The newest ``limit`` readings, newest first."""
    return [json.loads(raw) for raw in redis.lrange(series_key(lane), 0, max(limit, 1) - 1)]


def latest(redis: Any, lane: str) -> dict[str, Any] | None:
    raw = redis.lindex(series_key(lane), 0)
    return json.loads(raw) if raw else None
