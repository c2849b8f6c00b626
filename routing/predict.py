"""Predictive planning: will a lane finish within the share of the budget it would get?

From a lane's telemetry (``routing.telemetry``) and its broker queue, an ``Outlook`` predicts the
attempt's completion at a high quantile: queue wait + run time. ``share_ms`` then gives the lane its
share of the budget left and says whether it should be passed over:

- without enough fresh samples (cold start, or every prediction off): today's rule, half of what is left
  for every lane but the last, and no lane is skipped;
- with samples: a lane may use what its successors do not need (their predicted needs with a safety
  factor), up to twice its own need, and at least the half rule when that fits; it is skipped when its
  predicted completion exceeds that share. A successor without samples keeps the half rule's reserve.

Everything here is pure: the figures are read elsewhere and passed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from routing import provider_queue
from routing.budget import RETURN_MARGIN_MS, attempt_time_limit_ms
from routing.telemetry import Stats

SAFETY = 1.25  # what a successor's reserve adds to its predicted need
HEADROOM = 2.0  # a lane's share is at most this many times its predicted need (beyond the half rule)


@dataclass(frozen=True)
class PredictConfig:
    """Plain values from the settings (the same names)."""

    predictive: bool = True
    predict_quantile: float = 0.9
    predict_min_samples: int = 3
    telemetry_alpha: float = 0.2
    telemetry_stale_s: float = 60.0
    breakers: bool = True
    breaker_window: int = 10
    breaker_failure_rate: float = 0.5
    breaker_consecutive: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_probes: int = 2

    @classmethod
    def of(cls, values: Any) -> "PredictConfig":
        return cls(**{item.name: getattr(values, item.name) for item in fields(cls)})

    @property
    def label(self) -> str:
        return f"p{round(self.predict_quantile * 100)}"


@dataclass(frozen=True)
class Outlook:
    """What the planner knows of a lane now. ``wait_s``/``run_s`` are None without usable samples."""

    lane: str
    samples: int = 0
    wait_s: float | None = None
    run_s: float | None = None
    ahead: int = 0
    workers: int = 1
    quantile: str = "p90"
    basis: str = "no samples: half of the budget left"
    blocked: str | None = None  # a breaker's reason to pass the lane over

    @property
    def need_s(self) -> float | None:
        if self.run_s is None:
            return None
        return (self.wait_s or 0.0) + self.run_s

    def reason(self, share_ms: float) -> str:
        return (f"predicted: {self.lane} queue wait {self.quantile} {self.wait_s or 0.0:.1f} s "
                f"({self.ahead} ahead) + run {self.run_s or 0.0:.1f} s > share {max(share_ms, 0) / 1000:.1f} s")

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def outlook(lane: str, stats: Stats, lane_stats: Stats, ahead: int, workers: int, now: float,
            config: PredictConfig, *, fresh: bool = True, blocked: str | None = None,
            provider: dict[str, Any] | None = None) -> Outlook:
    """The lane's outlook for one problem class (``stats``) given the lane's queue right now.

    The queue wait is the larger of what this class waited at the quantile and the time the jobs ahead
    need to drain (``ahead`` × the lane's mean run time / its live workers): a queue that grows faster
    than samples arrive is seen at once. An attempt's run time includes its wait in the provider's own
    queue (the worker polls the provider meanwhile), so where the lane's workers publish the provider's
    figure (``routing.provider_queue``) the run time is at least the wait it implies now: a queue that
    grew at the provider is seen before slow samples arrive. ``fresh`` False (figures too old, and this
    caller probes the lane for new ones) and too few samples both mean no prediction.
    """
    base = Outlook(lane, stats.samples, ahead=ahead, workers=max(workers, 1), quantile=config.label,
                   blocked=blocked)
    run = stats.run_q(config.predict_quantile)
    if not config.predictive or stats.samples < config.predict_min_samples or run is None:
        return base
    if not fresh:
        age = now - (stats.updated_at or now)
        return _replace(base, basis=f"probe: figures {age:.0f} s old, this job refreshes them")
    mean = lane_stats.run_ema_s or stats.run_ema_s or 0.0
    drain = ahead * mean / max(workers, 1)
    wait = max(stats.wait_q(config.predict_quantile) or 0.0, drain)
    basis = f"telemetry: {stats.samples} samples, {config.label} of queue wait and run time"
    if provider is not None:
        run = max(run, provider_queue.wait_s(provider, mean) or 0.0)
        basis += "; " + provider_queue.describe(provider)
    return _replace(base, wait_s=wait, run_s=run, basis=basis)


def share_ms(remaining_ms: float, lane: Outlook | None, successors: Sequence[Outlook | None]) -> tuple[int, str | None]:
    """The lane's time limit and, when it should be passed over, why."""
    half = attempt_time_limit_ms(remaining_ms, len(successors))
    need = lane.need_s if lane is not None else None
    if need is None:
        return half, None
    need_ms = need * 1000
    if not successors:
        share = half
    elif all(s is not None and s.need_s is not None for s in successors):
        reserve = sum(s.need_s or 0.0 for s in successors if s is not None) * 1000 * SAFETY + RETURN_MARGIN_MS
        share = int(min(remaining_ms - reserve, max(need_ms * HEADROOM, half)))
    else:
        share = half
    if need_ms > share:
        return share, lane.reason(share)  # type: ignore[union-attr]
    return share, None


def drain_s(outlooks: Sequence[Outlook]) -> float:
    """How long until the shortest of these queues could take a new job: Retry-After for a refusal."""
    times = [o.wait_s for o in outlooks if o.wait_s is not None]
    return min(times) if times else 5.0


def _replace(item: Outlook, **changes: Any) -> Outlook:
    return Outlook(**{**asdict(item), **changes})
