"""Circuit breakers per lane: closed → open → half-open → closed, shared by every process through Redis.

Why not ``pybreaker``: it wraps a call in one process (its Redis storage shares the state, but a
transition happens where the wrapped call fails). Here the calls are attempts run by Celery workers and
concluded by workers or the watchdog, while the decision to use a lane is made by the ingress at
submission and by whoever moves a job on at a fallback. So the breaker is a small state machine over
one JSON value per lane, updated in the MULTI that concludes an attempt (the key WATCHed, like the job),
read by the planner, with each transition an audit event and a metric in that same MULTI.

- closed: every attempt's outcome goes into a window of the last ``window`` outcomes; the breaker
  opens on ``consecutive`` failures in a row, or when the window is full and at least
  ``failure_rate`` of it failed (timeouts count as failures).
- open: the planner passes the lane over until ``cooldown_s`` has passed.
- half-open: one probe at a time (a ``SET NX`` claim with the job id that expires after the cool-down,
  so a probe that never reports back does not wedge the lane); ``probes`` successes in a row close the
  breaker, a failure opens it again for another cool-down.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from audit.channel import emit
from jobs.model import iso
from routing.telemetry import CONCLUDED, concluded_lanes, lease_of
from telemetry.metrics import BREAKER_STATES, COUNTERS, SEP, set_gauge

Transition = tuple[str, str, str]  # from, to, reason


def breaker_key(lane: str) -> str:
    return f"qgate:lane:{lane}:breaker"


def probe_key(lane: str) -> str:
    return f"qgate:lane:{lane}:breaker:probe"


@dataclass(frozen=True)
class BreakerConfig:
    window: int = 10
    failure_rate: float = 0.5
    consecutive: int = 5
    cooldown_s: float = 30.0
    probes: int = 2


@dataclass(frozen=True)
class Breaker:
    state: str = "closed"  # closed | open | half_open
    since: float = 0.0
    window: str = ""  # the last outcomes, oldest first: "1" failed, "0" succeeded
    consecutive: int = 0
    probes_ok: int = 0
    reason: str = ""

    @classmethod
    def loads(cls, raw: str | None) -> "Breaker":
        return cls(**json.loads(raw)) if raw else cls()

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def cooled(self, now: float, config: BreakerConfig) -> bool:
        return now >= self.since + config.cooldown_s


def record(breaker: Breaker, failed: bool, now: float, config: BreakerConfig) -> tuple[Breaker, Transition | None]:
    """One concluded attempt's outcome."""
    window = (breaker.window + ("1" if failed else "0"))[-config.window:]
    consecutive = breaker.consecutive + 1 if failed else 0
    after = replace(breaker, window=window, consecutive=consecutive)
    if breaker.state == "closed":
        failures = window.count("1")
        if consecutive >= config.consecutive:
            return _to(after, "open", now, f"{consecutive} attempts in a row failed")
        if len(window) >= config.window and failures >= config.failure_rate * len(window):
            return _to(after, "open", now, f"{failures} of the last {len(window)} attempts failed")
        return after, None
    if breaker.state == "half_open":
        if failed:
            return _to(after, "open", now, "a probe failed after the cool-down")
        if breaker.probes_ok + 1 >= config.probes:
            closed, change = _to(after, "closed", now, f"{config.probes} probes in a row succeeded")
            return replace(closed, window="", consecutive=0), change
        return replace(after, probes_ok=breaker.probes_ok + 1), None
    return after, None  # open: attempts dispatched before it opened still report; they change nothing


def trip(breaker: Breaker, now: float, reason: str) -> tuple[Breaker, Transition | None]:
    """Open the breaker from outside the attempts (the calibration canary). Already open: the cool-down
    starts again with the new reason, and there is no transition to publish."""
    if breaker.state == "open":
        return replace(breaker, since=now, reason=reason), None
    return _to(breaker, "open", now, reason)


def _to(breaker: Breaker, state: str, now: float, reason: str) -> tuple[Breaker, Transition]:
    return replace(breaker, state=state, since=now, probes_ok=0, reason=reason), (breaker.state, state, reason)


def blocked_reason(breaker: Breaker) -> str:
    if breaker.state == "open":
        return f"breaker: open since {iso(breaker.since)} ({breaker.reason})"
    return f"breaker: half-open since {iso(breaker.since)}, a probe is in flight"


def publish(pipe: Any, lane: str, change: Transition, job_id: str | None = None) -> None:
    """A transition's audit event and metric, on a MULTI pipeline."""
    before, after, reason = change
    emit(pipe, "lane.breaker", lane=lane, from_state=before, to_state=after, reason=reason, trigger_job=job_id)
    pipe.hincrby(COUNTERS, SEP.join(("breaker", lane, after)), 1)
    set_gauge(pipe, "breaker_state", (lane,), BREAKER_STATES[after])


class Breakers:
    """The breakers in Redis: the store's observer on one side, the planner's admission on the other."""

    def __init__(self, redis: Any, config: BreakerConfig = BreakerConfig()) -> None:
        self.redis, self.config = redis, config

    # -- the job store's observer: outcomes recorded in the concluding transaction ----------------------

    def prepare(self, pipe: Any, before: Any, events: Iterable[tuple[str, Mapping[str, Any]]]) -> Any:
        """Before the MULTI: WATCH and read the breaker of each lane whose attempt in flight this change
        concludes, a fallback's ``current`` one or a portfolio's racing ones (a change that concludes none
        costs nothing). A race's losers closed as ``cancelled`` are no outcome of their lane's."""
        lanes = concluded_lanes(before, events)
        if not lanes:
            return None
        pipe.watch(*(breaker_key(lane) for lane in lanes), *(probe_key(lane) for lane in lanes))
        return {lane: (Breaker.loads(pipe.get(breaker_key(lane))), pipe.get(probe_key(lane))) for lane in lanes}

    def observe(self, pipe: Any, before: Any, job: Any, events: Iterable[tuple[str, Mapping[str, Any]]],
                now: float, prepared: Any = None) -> None:
        read: dict[str, tuple[Breaker, str | None]] = dict(prepared or {})
        breakers = {lane: breaker for lane, (breaker, _) in read.items()}
        for event_type, data in events:
            outcome = CONCLUDED.get(event_type)
            lane = data.get("lane")
            lease = lease_of(before, data.get("attempt"))
            if outcome is None or lane not in breakers or lease is None or lease.lane != lane:
                continue
            breaker = breakers[lane]
            after, change = record(breaker, outcome != "ok", now, self.config)
            breakers[lane] = after
            pipe.set(breaker_key(lane), after.dumps())
            if breaker.state == "half_open" and read[lane][1] == job.job_id:
                # the probe reported; a straggler admitted before the breaker opened counts as evidence
                # but leaves the claim to the probing job, so no second probe starts beside it
                pipe.delete(probe_key(lane))
            if change:
                publish(pipe, lane, change, job.job_id)

    # -- the planner ------------------------------------------------------------------------------------

    def admit(self, lane: str, breaker: Breaker, job_id: str, now: float) -> str | None:
        """None when the lane may be used (closed, or this job holds the probe); else the reason."""
        if breaker.state == "closed":
            return None
        if breaker.state == "open" and not breaker.cooled(now, self.config):
            return blocked_reason(breaker)
        ttl_ms = max(int(self.config.cooldown_s * 1000), 1000)
        claimed = self.redis.set(probe_key(lane), job_id, nx=True, px=ttl_ms)
        if not claimed and self.redis.get(probe_key(lane)) != job_id:
            return blocked_reason(replace(breaker, state="half_open"))
        if breaker.state == "open":
            self._half_open(lane, now)
        return None

    def _half_open(self, lane: str, now: float) -> None:
        key = breaker_key(lane)

        def apply(pipe: Any) -> None:
            current = Breaker.loads(pipe.get(key))
            if current.state != "open":
                return
            after, change = _to(current, "half_open", now, f"cool-down of {self.config.cooldown_s:g} s over; probing")
            pipe.multi()
            pipe.set(key, after.dumps())
            publish(pipe, lane, change)

        self.redis.transaction(apply, key)
