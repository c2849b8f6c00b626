"""``strategy: portfolio``: the lanes of the plan race side by side; the best feasible answer wins.

Each function here is one transition for ``JobStore.transition`` (WATCH on the job, MULTI, retry on a
concurrent change), so two attempts concluding at the same moment are serialised: the second one re-reads
the job with the first one's candidate in it, and exactly one answer is kept. A portfolio job keeps its
attempts in flight in ``racing`` (``current`` stays None) and the best answer so far in ``portfolio.best``.

The job ends when a lane proves optimality (its solver's details say ``optimal: true``: exact MILP,
enumeration), when its last racing attempt concludes, or when the watchdog finds its budget spent; the
attempts still racing are then closed as ``cancelled`` in the same transition, and their workers' watch
(``JobStore.attempt_stopped``) stops the solvers through the usual cancellation path.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from jobs import model
from jobs.model import Event, Job, Lease
from routing.budget import worth_starting
from routing.fallback import MIN_RUN_S, REFUSALS, failure_reason

Changed = tuple[Job, list[Event]]
STRATEGY = "portfolio"
MARGIN_SHARE = 0.1  # each lane gets the budget less this share of it (the conclusion and the answer's trip)
MIN_MARGIN_MS, MAX_MARGIN_MS = 30, 500
TIE = 1e-9  # relative: objectives this close are equal, and the first to finish keeps the win


def is_portfolio(job: Job) -> bool:
    return job.request.get("strategy") == STRATEGY


def lane_limit_ms(budget_ms: float) -> int:
    """What each racing lane may use: the budget less a margin of 10 % (30 ms to 500 ms)."""
    margin = min(max(budget_ms * MARGIN_SHARE, MIN_MARGIN_MS), MAX_MARGIN_MS)
    return int(max(budget_ms - margin, 0))


# -- choosing ---------------------------------------------------------------------------------------------

def objective_of(result: dict[str, Any] | None) -> float | None:
    """The gateway's recomputed objective of a scored result (``solvers.objective.score``): its cost, or a
    QUBO's energy; None for results without one (a circuit's counts)."""
    if not result:
        return None
    for name in ("cost", "energy"):
        value = result.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def feasible(result: dict[str, Any] | None) -> bool:
    return bool(result) and result.get("feasible", True) is not False  # type: ignore[union-attr]


def better(objective: float | None, than: float | None) -> bool:
    """Whether a new answer beats the best so far (minimisation; an equal one does not: ties go to the
    first to finish). An answer without an objective never beats one that has an answer already."""
    if than is None or objective is None:
        return False
    return objective < than - TIE * max(1.0, abs(than))


def gap(objective: float | None, best: float | None) -> float | None:
    """How much worse ``objective`` is than ``best`` (absolute, ≥ 0 when best is the minimum)."""
    if objective is None or best is None:
        return None
    return round(objective - best, 9)


def relative_gap(objective: float | None, reference: float | None) -> float | None:
    """(objective − reference) / |reference|, the lane report's gap; None without both figures."""
    if objective is None or reference is None:
        return None
    return (objective - reference) / max(abs(reference), 1e-9)


def compare(objective: float | None, reference: float | None) -> str | None:
    """``better``, ``equal`` or ``worse`` than the reference (minimisation), None without both."""
    if objective is None or reference is None:
        return None
    tolerance = TIE * max(1.0, abs(reference))
    if objective < reference - tolerance:
        return "better"
    if objective > reference + tolerance:
        return "worse"
    return "equal"


# -- transitions ------------------------------------------------------------------------------------------

def start(job: Job, lease_grace_ms: int, now: float | None = None,
          lane_cost_usd: Mapping[str, float] | None = None, outlooks: Mapping[str, Any] | None = None) -> Changed:
    """Dispatch every lane of the plan at once, each with the budget less the margin; lanes that refused
    the problem themselves are recorded as skipped attempts, as a fallback job records them, and so are
    lanes whose breaker is open (``outlooks``: their ``blocked`` reason). Predictions pass no lane over: a
    race gives every lane the whole budget. Each racing lane's estimated cost is kept
    (``portfolio.costs``) for the lane report's row of its attempt."""
    now = time.time() if now is None else now
    limit_ms = lane_limit_ms((job.deadline - now) * 1000)
    events: list[Event] = []
    racing: list[Lease] = []
    job.racing = racing  # skipped lanes are numbered after the racing attempts already dispatched
    for step in job.plan:
        if step.action == "skip":
            if step.reason.startswith(REFUSALS):
                job, skipped = model.skip_lane(job, step.lane, step.reason)
                events += skipped
            continue
        look = (outlooks or {}).get(step.lane)
        if look is not None and look.blocked:
            job, skipped = model.skip_lane(job, step.lane, look.blocked)
            events += skipped
            continue
        if not worth_starting(limit_ms):
            job, skipped = model.skip_lane(job, step.lane, f"budget: {limit_ms} ms is too little to start")
            events += skipped
            continue
        n = len(job.attempts) + len(racing) + 1
        racing.append(Lease(n=n, lane=step.lane, task_id=f"{job.job_id}.{n}", enqueued_at=now, started_at=None,
                            limit_ms=limit_ms, deadline=now + limit_ms / 1000,
                            lease_until=now + (limit_ms + lease_grace_ms) / 1000))
        events.append(("attempt.enqueued", {"lane": step.lane, "attempt": n, "limit_ms": limit_ms,
                                            "strategy": STRATEGY}))
    if not racing:
        job.racing = None
        job, failed = model.fail(job, failure_reason(job, now))
        return job, events + failed
    costs = {lease.lane: float((lane_cost_usd or {}).get(lease.lane, 0.0)) for lease in racing}
    job.racing, job.portfolio, job.dispatches = racing, {"best": None, "costs": costs}, len(racing)
    return job, events


def begin(job: Job, attempt: int, worker: str, lease_grace_ms: int, now: float | None = None) -> Changed:
    """A worker takes a racing attempt: start it, or close it as timed out when its time was spent in
    the queue (a worker never starts an attempt that has no time left)."""
    now = time.time() if now is None else now
    model._require_active(job)
    lease = next((item for item in job.racing or [] if item.n == attempt), None)
    if lease is None:
        raise model.Conflict(f"attempt {attempt} is not racing")
    if lease.started_at is not None:
        raise model.Conflict(f"attempt {attempt} was already started")
    if now >= lease.deadline - MIN_RUN_S:
        waited_ms = (now - lease.enqueued_at) * 1000
        reason = (f"waited {waited_ms:.0f} ms in the {lease.lane} queue: its {lease.limit_ms} ms were spent "
                  "before a worker took it (lane over capacity)")
        return conclude(job, attempt, "timeout", reason, now=now)
    lease.started_at, lease.worker, job.status = now, worker, "running"
    return job, [("attempt.started", {"lane": lease.lane, "attempt": attempt, "worker": worker,
                                      "strategy": STRATEGY})]


def conclude(job: Job, attempt: int, outcome: str, reason: str, *, solver: dict[str, Any] | None = None,
             result: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
             now: float | None = None) -> Changed:
    """Close a racing attempt with its own objective, keep its answer if it beats the best so far, and
    end the job when it proved optimality or was the last one racing."""
    now = time.time() if now is None else now
    succeeded = outcome == "succeeded"
    objective = objective_of(result) if succeeded else None
    job, events = model.close_lease(job, attempt, outcome, reason, solver=(solver or {}).get("id"),
                                    objective=objective, now=now)
    state = dict(job.portfolio or {})
    best = state.get("best")
    proved = False
    if succeeded:  # the lane report needs each answer's feasibility once the losers' answers are gone
        state["feasible"] = {**state.get("feasible", {}), str(attempt): feasible(result)}
    if succeeded and feasible(result):
        lane = job.attempts[-1].lane
        details = (provenance or {}).get("solver_details") or {}
        proved = details.get("optimal") is True or objective is None  # counts have no objective to improve
        if best is None or better(objective, best.get("objective")):
            state["best"] = {"n": attempt, "lane": lane, "objective": objective, "result": result,
                             "solver": solver, "provenance": provenance, "optimal": proved}
    job.portfolio = state
    if proved and state["best"]["n"] == attempt:
        return _end(job, events, f"{job.attempts[-1].lane} proved its answer optimal", now)
    if proved:  # proven optimal but tied with an earlier answer: the earlier one keeps the win
        return _end(job, events, f"{job.attempts[-1].lane} proved the optimum another lane had found first", now)
    if not job.racing:
        return _end(job, events, "every lane concluded", now)
    return job, events


def expire(job: Job, lease_grace_ms: int, now: float | None = None) -> Changed:
    """The watchdog's transition: racing leases that ran out count as timed out; a job whose budget is
    spent ends with the best answer so far (the attempts still running are cancelled)."""
    now = time.time() if now is None else now
    if job.status in model.TERMINAL or not job.racing:
        raise model.Conflict("no racing attempt on this job")
    due = [lease for lease in job.racing if lease.lease_until <= now]
    spent = now >= job.deadline
    if not due and not spent:
        raise model.Conflict("no expired lease on this job")
    events: list[Event] = []
    for lease in due:
        where = (f"{lease.worker or 'a worker'} gave no answer" if lease.started_at else "no worker took it")
        job, closed = conclude(job, lease.n, "timeout", f"lease expired: {where} within {lease.limit_ms} ms "
                                                        "+ grace: worker lost, stalled or lane over capacity",
                               now=now)
        events += closed
        if job.status in model.TERMINAL:
            return job, events
    if job.racing and spent:
        return _end(job, events, f"latency budget of {job.latency_budget_ms} ms spent", now)
    return job, events


def lease_due(job: Job) -> float | None:
    """When the watchdog must next look at a portfolio job: its first racing lease, or its budget's end
    (plus the grace the racing attempts have to conclude themselves)."""
    if not job.racing:
        return None
    return min(lease.lease_until for lease in job.racing)


def _end(job: Job, events: list[Event], why: str, now: float) -> Changed:
    """End the race: cancel what still runs, serve the best answer (or fail), say by how much it won."""
    for lease in list(job.racing or []):
        job, closed = model.close_lease(job, lease.n, "cancelled", f"portfolio ended: {why}", now=now)
        events += closed
    state = dict(job.portfolio or {})
    best = state.get("best")
    winner = best["lane"] if best else None
    reference = best.get("objective") if best else None
    lanes: dict[str, dict[str, Any]] = {}
    margins: dict[str, float | None] = {}
    for attempt in job.attempts:
        lanes[attempt.lane] = {"attempt": attempt.n, "outcome": attempt.outcome, "objective": attempt.objective,
                               "duration_ms": attempt.duration_ms}
        if attempt.lane != winner:
            margins[attempt.lane] = gap(attempt.objective, reference)
    state.update(winner=winner, objective=reference, margins=margins, lanes=lanes, ended=why)
    job.portfolio = state
    if best is None:
        job, failed = model.fail(job, failure_reason(job, now))
        return job, events + failed
    state["best"] = {"n": best["n"], "lane": best["lane"], "objective": reference}  # the answer is the result now
    job, done = model.succeed(job, best["result"] or {}, best["solver"] or {}, best["provenance"] or {}, now)
    done[0][1]["portfolio"] = {k: state[k] for k in ("winner", "objective", "margins", "ended")}
    return job, events + done
