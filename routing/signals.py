"""The lanes' figures for the planner, read from Redis in one pipelined round trip.

For each lane a job may still try: its telemetry for the job's problem class and for the whole lane, its
broker queue depth (LLEN of the Celery list), its live workers and its breaker. The result is an
``Outlook`` per lane (``routing.predict``). Two claims are made on the way, each a ``SET NX``:
a breaker's half-open probe, and a refresh probe when a lane's figures are older than
``telemetry_stale_s`` (a lane the planner keeps passing over gets no new samples, so one job at a time
is let through to refresh them).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from jobs.model import iso
from routing import provider_queue
from routing.breaker import Breaker, BreakerConfig, Breakers, blocked_reason, breaker_key
from routing.estimates import cold_start_run_s
from routing.health import alive_key
from routing.provider_queue import provider_queue_key
from routing.predict import Outlook, PredictConfig, outlook
from routing.telemetry import LaneTelemetry, Stats, TelemetryConfig, telemetry_key
from routing.waiting import WaitingLanes, waiting_key


class LaneSignals:
    """Reads the lanes' figures for plans and queue positions, and names the store observers that keep
    them (telemetry, breakers, waiting sets)."""

    def __init__(self, redis: Any, config: PredictConfig) -> None:
        self.redis, self.config = redis, config
        self.breakers = Breakers(redis, BreakerConfig(config.breaker_window, config.breaker_failure_rate,
                                                      config.breaker_consecutive, config.breaker_cooldown_s,
                                                      config.breaker_probes))
        self.telemetry = LaneTelemetry(TelemetryConfig(alpha=config.telemetry_alpha))

    def observers(self) -> list[Any]:
        """What the job store must write with each change for these figures to stay true (breakers only
        when they are on: a breaker nobody consults would still audit transitions)."""
        return [self.telemetry, *([self.breakers] if self.config.breakers else []), WaitingLanes()]

    def outlooks(self, lanes: Sequence[str], problem_class: str | None, job_id: str,
                 now: float | None = None) -> dict[str, Outlook]:
        now = time.time() if now is None else now
        if not lanes:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for lane in lanes:
            LaneTelemetry.read(pipe, lane, problem_class)
            pipe.llen(lane)
            pipe.zcount(alive_key(lane), now, "+inf")
            pipe.get(breaker_key(lane))
            pipe.get(provider_queue_key(lane))
        replies = pipe.execute()
        looks: dict[str, Outlook] = {}
        admitted = False  # a lane before this one may be used: later lanes claim no probe yet
        for i, lane in enumerate(lanes):
            raw, lane_raw, depth, workers, breaker_raw, provider_raw = replies[i * 6:(i + 1) * 6]
            stats = Stats.of(raw) if problem_class else Stats()
            blocked = None
            if self.config.breakers:
                blocked = self._admit(lane, Breaker.loads(breaker_raw), job_id, now, claim=not admitted)
            admitted = admitted or blocked is None
            fresh = not (stats.samples and self._stale(stats, now) and self._claim_refresh(lane, problem_class, job_id))
            looks[lane] = outlook(lane, stats, Stats.of(lane_raw), int(depth), int(workers), now, self.config,
                                  fresh=fresh, blocked=blocked, provider=provider_queue.loads(provider_raw))
        return looks

    def queue(self, lane: str, problem_class: str | None, job_id: str, now: float | None = None,
              prior_s: float | None = None) -> dict[str, Any] | None:
        """Where a waiting job stands (the job resource's ``queue``), or None when it is not waiting.

        Read only: the job's rank in its lane's waiting set, the lane's live workers and mean run time
        (from telemetry, else the cold-start estimate), and the class's run time at the quantile (else
        ``prior_s``, the job's own estimate on the lane, when it has one)."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrank(waiting_key(lane), job_id)
        pipe.zcount(alive_key(lane), now, "+inf")
        LaneTelemetry.read(pipe, lane, problem_class)
        pipe.get(provider_queue_key(lane))
        rank, workers, raw, lane_raw, provider_raw = pipe.execute()
        if rank is None:
            return None
        stats, lane_stats = Stats.of(raw) if problem_class else Stats(), Stats.of(lane_raw)
        workers = max(int(workers), 1)
        mean = lane_stats.run_ema_s
        run = stats.run_q(self.config.predict_quantile)
        if mean is None or run is None:
            own = cold_start_run_s(lane, prior_s)
            basis = (f"cold start: no samples on {lane}, the lane's estimate of {cold_start_run_s(lane):g} s per job"
                     + (f", this job's {own:g} s" if prior_s is not None else ""))
            mean, run = mean or cold_start_run_s(lane), run or own
        else:
            basis = (f"{lane} queue: {rank} ahead × {mean:.2f} s mean run / {workers} worker(s); "
                     f"run {self.config.label} of {stats.samples} samples")
        start = now + rank * mean / workers
        figure = provider_queue.loads(provider_raw)
        if figure is not None:  # the provider's queue is waited out inside the attempt: part of its run
            basis += "; " + provider_queue.describe(figure)
            run = max(run, provider_queue.wait_s(figure, mean) or 0.0)
        out = {"lane": lane, "position": int(rank) + 1, "ahead": int(rank), "predicted_start_at": iso(start),
               "predicted_finish_at": iso(start + run), "basis": basis}
        if figure is not None:
            out["provider"] = figure
        return out

    def _admit(self, lane: str, breaker: Breaker, job_id: str, now: float, claim: bool) -> str | None:
        """The breaker's verdict. Only the first usable lane claims a half-open probe: a successor's probe
        is claimed at the fallback that would dispatch it, with fresh figures; until then it counts as
        usable when its cool-down is over."""
        if claim or breaker.state == "closed":
            return self.breakers.admit(lane, breaker, job_id, now)
        if breaker.state == "half_open" or breaker.cooled(now, self.breakers.config):
            return None
        return blocked_reason(breaker)

    def _stale(self, stats: Stats, now: float) -> bool:
        return stats.updated_at is not None and now - stats.updated_at > self.config.telemetry_stale_s

    def _claim_refresh(self, lane: str, problem_class: str | None, job_id: str) -> bool:
        key = telemetry_key(lane, problem_class or "*") + ":refresh"
        ttl_ms = max(int(self.config.telemetry_stale_s * 1000), 1000)
        return bool(self.redis.set(key, job_id, nx=True, px=ttl_ms)) or self.redis.get(key) == job_id


class LazyOutlooks(Mapping[str, Outlook]):
    """Outlooks read on first use: a transition that ends in success or starts an attempt never asks,
    so it costs no round trip."""

    def __init__(self, fetch: Callable[[], Mapping[str, Outlook]]) -> None:
        self._fetch, self._looks = fetch, None  # type: ignore[assignment]

    def _all(self) -> Mapping[str, Outlook]:
        if self._looks is None:
            self._looks = self._fetch()
        return self._looks

    def __getitem__(self, lane: str) -> Outlook:
        return self._all()[lane]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
