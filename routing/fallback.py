"""What happens after an attempt ends: succeed, fall back to the next lane, or end the job with a reason.

Each function here is one transition for ``JobStore.transition``: closing an attempt and starting the
next one are a single atomic change, so there is never a moment when a crash leaves a live job with
neither an attempt in flight nor an end.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from jobs import model
from jobs.model import Event, Job
from routing.budget import worth_starting
from routing.predict import Outlook, share_ms

Changed = tuple[Job, list[Event]]
REFUSALS = ("capacity:", "unsupported:")  # skip reasons given by the lane itself, not by policy
PASSED_OVER = ("predicted:", "breaker:")  # skip reasons from the lanes' figures at dispatch time
Outlooks = Mapping[str, Outlook]
MIN_RUN_S = 0.05  # an attempt with less time than this left is not worth starting


def next_step(job: Job, lease_grace_ms: int, now: float | None = None, outlooks: Outlooks | None = None) -> Changed:
    """Walk the plan past the last lane handled: record lanes that refused the problem themselves as
    skipped attempts (lanes left out by policy stay in the plan only), then dispatch the next lane to
    try with its share of the budget, or fail the job when none is left.

    ``outlooks`` (the lanes' figures, read just before this change) may pass a lane over, recorded as a
    skipped attempt with a ``breaker:`` or ``predicted:`` reason, and set the shares; each decision and
    its inputs are kept on the job. Without them the shares are the half-of-what-is-left rule."""
    now = time.time() if now is None else now
    looks = outlooks if outlooks is not None else {}  # (a lazy mapping reads nothing until asked)
    handled = {a.lane for a in job.attempts}
    pending = [step for step in job.plan if step.lane not in handled
               and (step.action == "try" or step.reason.startswith(REFUSALS))]
    events: list[Event] = []
    for i, step in enumerate(pending):
        lane = step.lane
        if step.action == "skip":
            job, skipped = model.skip_lane(job, lane, step.reason)
            events += skipped
            continue
        successors = [other.lane for other in pending[i + 1:] if other.action == "try"]
        later = len(successors)
        remaining_ms = (job.deadline - now) * 1000
        look = looks.get(lane)
        limit_ms, passed_over = share_ms(remaining_ms, look, [looks.get(other) for other in successors])
        passed_over = (look.blocked if look is not None else None) or passed_over
        if outlooks is not None:
            action = "dispatch" if not passed_over and worth_starting(limit_ms) else "skip"
            _decide(job, lane, action, limit_ms, remaining_ms, look, now)
        if passed_over:
            job, skipped = model.skip_lane(job, lane, passed_over)
            events += skipped
            continue
        if worth_starting(limit_ms):
            job, dispatched = model.dispatch(job, lane, limit_ms, lease_grace_ms, now)
            return job, events + dispatched
        if later == 0:
            break
        job, skipped = model.skip_lane(job, lane, f"budget: {max(0, int(remaining_ms))} ms left, "
                                                  f"kept for the lanes after {lane}")
        events += skipped
    job, failed = model.fail(job, failure_reason(job, now))
    return job, events + failed


def _decide(job: Job, lane: str, action: str, limit_ms: int, remaining_ms: float, look: Outlook | None,
            now: float) -> None:
    """Keep what a planning decision rested on (the job resource's ``decision`` block)."""
    entry = {"at": model.iso(now), "lane": lane, "action": action, "share_ms": limit_ms,
             "remaining_ms": round(max(remaining_ms, 0.0)), "outlook": look.as_dict() if look else None}
    job.decisions = [*(job.decisions or []), entry]


def passed_over_only(job: Job) -> bool:
    """Whether the job failed without an attempt because its lanes were passed over on their figures
    (admission refuses such a job rather than accept it to fail)."""
    attempts = job.attempts
    return (job.status == "failed" and bool(attempts) and all(a.outcome == "skipped" for a in attempts)
            and any(a.reason.startswith(PASSED_OVER) for a in attempts))


def failure_reason(job: Job, now: float) -> str:
    """One sentence naming why each lane did not answer."""
    tried = "; ".join(f"{a.lane} {a.outcome}: {a.reason}" for a in job.attempts)
    if (job.deadline - now) * 1000 < 1:
        head = f"latency budget of {job.latency_budget_ms} ms exhausted"
    else:
        head = "no lane could answer"
    return f"{head}" + (f" ({tried})" if tried else "")


def conclude_attempt(job: Job, attempt: int, outcome: str, reason: str, lease_grace_ms: int, *,
                     solver: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
                     provenance: dict[str, Any] | None = None, now: float | None = None,
                     outlooks: Outlooks | None = None) -> Changed:
    """Close attempt ``attempt``; on success end the job, otherwise move on down the plan."""
    now = time.time() if now is None else now
    job, events = model.finish_attempt(job, attempt, outcome, reason,
                                       solver=(solver or {}).get("id"), now=now)
    if outcome == "succeeded":
        job, more = model.succeed(job, result or {}, solver or {}, provenance or {}, now)
    else:
        job, more = next_step(job, lease_grace_ms, now, outlooks)
    return job, events + more


def begin_attempt(job: Job, attempt: int, worker: str, lease_grace_ms: int,
                  now: float | None = None, outlooks: Outlooks | None = None) -> Changed:
    """A worker takes attempt ``attempt`` off its queue: start it, or, when the attempt's share of the
    budget was spent while it waited, close it as timed out saying so and move the job on. A worker
    never starts an attempt that has no time left."""
    now = time.time() if now is None else now
    current = job.current
    if (job.status not in model.TERMINAL and current and current.n == attempt
            and current.started_at is None and now >= current.deadline - MIN_RUN_S):
        waited_ms = (now - current.enqueued_at) * 1000
        reason = (f"waited {waited_ms:.0f} ms in the {current.lane} queue: its share of "
                  f"{current.limit_ms} ms was spent before a worker took it (lane over capacity)")
        return conclude_attempt(job, attempt, "timeout", reason, lease_grace_ms, now=now, outlooks=outlooks)
    return model.start_attempt(job, attempt, worker, now)


def expire_lease(job: Job, lease_grace_ms: int, now: float | None = None,
                 outlooks: Outlooks | None = None) -> Changed:
    """The watchdog's transition: the current attempt outlived its lease (worker lost, stalled, or the
    lane's queue too slow), so it counts as timed out, with where the time went, and the job moves on."""
    now = time.time() if now is None else now
    current = job.current
    if job.status in model.TERMINAL or not current or current.lease_until > now:
        raise model.Conflict("no expired lease on this job")
    lane, limit = current.lane, current.limit_ms
    if current.started_at:
        ran_ms = (now - current.started_at) * 1000
        queued_ms = (current.started_at - current.enqueued_at) * 1000
        reason = (f"lease expired: {'a worker' if current.worker is None else current.worker} started it after {queued_ms:.0f} ms "
                  f"in the queue and gave no answer {ran_ms:.0f} ms later (limit {limit} ms + grace): "
                  "worker lost or stalled")
    else:
        waited_ms = (now - current.enqueued_at) * 1000
        reason = (f"lease expired: waited {waited_ms:.0f} ms in the {lane} queue and no worker took it "
                  f"(limit {limit} ms + grace): lane over capacity, or its workers lost")
    return conclude_attempt(job, current.n, "timeout", reason, lease_grace_ms, now=now, outlooks=outlooks)


def start(job: Job, lease_grace_ms: int, now: float | None = None, outlooks: Outlooks | None = None) -> Changed:
    """The first dispatch of a new job."""
    return next_step(job, lease_grace_ms, now, outlooks)
