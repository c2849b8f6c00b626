"""What happens after an attempt ends: succeed, fall back to the next lane, or end the job with a reason.

Each function here is one transition for ``JobStore.transition``: closing an attempt and starting the
next one are a single atomic change, so there is never a moment when a crash leaves a live job with
neither an attempt in flight nor an end.
"""

from __future__ import annotations

import time
from typing import Any

from jobs import model
from jobs.model import Event, Job
from routing.budget import attempt_time_limit_ms, worth_starting

Changed = tuple[Job, list[Event]]
REFUSALS = ("capacity:", "unsupported:")  # skip reasons given by the lane itself, not by policy
MIN_RUN_S = 0.05  # an attempt with less time than this left is not worth starting


def next_step(job: Job, lease_grace_ms: int, now: float | None = None) -> Changed:
    """Walk the plan past the last lane handled: record lanes that refused the problem themselves as
    skipped attempts (lanes left out by policy stay in the plan only), then dispatch the next lane to
    try with its share of the budget, or fail the job when none is left."""
    now = time.time() if now is None else now
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
        later = sum(1 for other in pending[i + 1:] if other.action == "try")
        remaining_ms = (job.deadline - now) * 1000
        limit_ms = attempt_time_limit_ms(remaining_ms, later)
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
                     provenance: dict[str, Any] | None = None, now: float | None = None) -> Changed:
    """Close attempt ``attempt``; on success end the job, otherwise move on down the plan."""
    now = time.time() if now is None else now
    job, events = model.finish_attempt(job, attempt, outcome, reason,
                                       solver=(solver or {}).get("id"), now=now)
    if outcome == "succeeded":
        job, more = model.succeed(job, result or {}, solver or {}, provenance or {}, now)
    else:
        job, more = next_step(job, lease_grace_ms, now)
    return job, events + more


def begin_attempt(job: Job, attempt: int, worker: str, lease_grace_ms: int,
                  now: float | None = None) -> Changed:
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
        return conclude_attempt(job, attempt, "timeout", reason, lease_grace_ms, now=now)
    return model.start_attempt(job, attempt, worker, now)


def expire_lease(job: Job, lease_grace_ms: int, now: float | None = None) -> Changed:
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
    return conclude_attempt(job, current.n, "timeout", reason, lease_grace_ms, now=now)


def start(job: Job, lease_grace_ms: int, now: float | None = None) -> Changed:
    """The first dispatch of a new job."""
    return next_step(job, lease_grace_ms, now)
