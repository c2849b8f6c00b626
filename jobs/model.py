"""The job record and its state machine: pydantic models, and transitions as plain functions over them.

A ``Job`` mirrors exactly the JSON that Redis has always stored (``JobStore`` writes
``job.model_dump()``): the same keys, with ``dispatches``, ``audit_events`` and a lease's ``worker``
present only once they are set, so a job written by the previous version is read as it is, and a job
written now is read by it. ``JobView`` is the job resource as the contract shows it to its tenant: the
public view is built from its fields, and ``api.openapi`` publishes its JSON Schema.

Each transition checks that it applies (raising ``Conflict`` otherwise: a stale worker, a duplicate
delivery, a job already finished), changes the job and returns it with the audit events it causes. The
store applies a transition and its events atomically, so the log and the job never disagree.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from solvers.problems import KINDS
from solvers.registry import LANES

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ATTEMPT_OUTCOMES = frozenset({"succeeded", "failed", "timeout", "skipped", "cancelled"})
Event = tuple[str, dict[str, Any]]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Outcome = Literal["cancelled", "failed", "skipped", "succeeded", "timeout"]
Lane = Literal[LANES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]


class Conflict(Exception):
    """The transition does not apply to the job as it now stands."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


JOB_ID = re.compile(r"[0-9a-f]{32}")


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    """Whether ``value`` has the form of a job id: anything else could name another Redis key."""
    return JOB_ID.fullmatch(value) is not None


# -- the stored record ---------------------------------------------------------------------------------

def _absent_when_none(value: Any) -> bool:
    return value is None


class Record(BaseModel):
    """A part of the stored job."""

    model_config = ConfigDict(extra="forbid")


class PlanStep(Record):
    """A lane of the plan as stored: ``try`` it, or ``skip`` it for ``reason``."""

    lane: str
    action: Literal["try", "skip"]
    reason: str


class Attempt(Record):
    """A lane that was tried (or passed over: ``skipped``), numbered from 1."""

    n: int
    lane: str
    solver: str | None
    outcome: Outcome
    reason: str
    duration_ms: float
    queued_ms: float
    objective: float | None = Field(default=None, exclude_if=_absent_when_none)  # portfolio: recomputed


class Lease(Record):
    """The attempt in flight (the job's ``current``): its task, its time limit and the watchdog's lease."""

    n: int
    lane: str
    task_id: str
    enqueued_at: float
    started_at: float | None
    limit_ms: int
    deadline: float
    lease_until: float
    worker: str | None = Field(default=None, exclude_if=_absent_when_none)


class Provenance(Record):
    """What the answer rests on; a success adds the solver's details (``solver_details``)."""

    model_config = ConfigDict(extra="allow")

    fingerprint: str
    seed: int | None
    calibration: dict[str, Any] | None


class CostEstimate(Record):
    model_config = ConfigDict(extra="allow")

    usd: float
    basis: str


class Delivery(Record):
    """One webhook delivery attempt: ``status`` is the receiver's HTTP status, None when it gave none."""

    attempt: int
    at: str
    status: int | None
    duration_ms: float
    error: str | None


class Webhook(Record):
    """A job's webhook: ``waiting`` for the job to end, ``pending`` (due in the outbox), ``delivered`` or
    ``failed``. ``id`` is the Standard Webhooks ``webhook-id``, the same for every attempt of the event;
    ``tries`` counts the attempts since ``window_start`` (the job's end, or a redelivery request)."""

    id: str
    state: Literal["waiting", "pending", "delivered", "failed"]
    tries: int = 0
    window_start: float | None = None


class Job(Record):
    """The job record as stored in Redis (``qgate:job:<id>``)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    tenant: str
    client_id: str
    status: Status
    kind: str
    created_at: str
    finished_at: str | None
    latency_budget_ms: int
    deadline: float
    request: dict[str, Any]  # the solve options: solver, strategy, cost_tier, callback_url, seed, metadata
    plan: list[PlanStep]
    attempts: list[Attempt]
    current: Lease | None
    result: dict[str, Any] | None
    solver: dict[str, Any] | None  # {"lane", "id", "version"}
    error: str | None
    provenance: Provenance
    cost_estimate: CostEstimate
    dispatches: int | None = Field(default=None, exclude_if=_absent_when_none)
    audit_events: int | None = Field(default=None, exclude_if=_absent_when_none)
    webhook: Webhook | None = Field(default=None, exclude_if=_absent_when_none)
    deliveries: list[Delivery] | None = Field(default=None, exclude_if=_absent_when_none)
    problem_class: str | None = Field(default=None, exclude_if=_absent_when_none)  # kind:size, for telemetry
    decisions: list[dict[str, Any]] | None = Field(default=None, exclude_if=_absent_when_none)  # planning inputs
    racing: list[Lease] | None = Field(default=None, exclude_if=_absent_when_none)  # portfolio: attempts in flight
    portfolio: dict[str, Any] | None = Field(default=None, exclude_if=_absent_when_none)  # best so far, winner
    shadow: list[dict[str, Any]] | None = Field(default=None, exclude_if=_absent_when_none)  # shadow runs
    shadow_of: str | None = Field(default=None, exclude_if=_absent_when_none)  # a shadow run: its served job
    trace_id: str | None = Field(default=None, exclude_if=_absent_when_none)  # W3C trace of its submission
    run_prior_s: dict[str, float] | None = Field(default=None, exclude_if=_absent_when_none)  # lane -> cold-start run

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


_ABSENT_WHEN_NONE = frozenset({"worker", "dispatches", "audit_events", "webhook", "deliveries", "problem_class",
                               "decisions", "racing", "portfolio", "shadow", "shadow_of", "objective",
                               "run_prior_s"})


# -- transitions -----------------------------------------------------------------------------------------

def new_job(*, job_id: str, tenant: str, client_id: str, kind: str, budget_ms: int, request: dict[str, Any],
            plan: list[dict[str, Any]], fingerprint: str, cost_estimate: dict[str, Any],
            now: float | None = None, problem_class: str | None = None) -> tuple[Job, list[Event]]:
    """A queued job; ``request`` holds the solve options (solver, strategy, cost_tier, seed, ...)."""
    now = time.time() if now is None else now
    job = Job(job_id=job_id, tenant=tenant, client_id=client_id, status="queued", kind=kind,
              created_at=iso(now), finished_at=None, latency_budget_ms=budget_ms,
              deadline=now + budget_ms / 1000, request=request, plan=[PlanStep(**step) for step in plan],
              attempts=[], current=None, result=None, solver=None, error=None,
              provenance=Provenance(fingerprint=fingerprint, seed=request.get("seed"), calibration=None),
              cost_estimate=CostEstimate(**cost_estimate), problem_class=problem_class)
    event = ("job.accepted", {"kind": kind, "budget_ms": budget_ms, "fingerprint": fingerprint,
                              "plan": plan, "request": request, "client_id": client_id})
    return job, [event]


def _require_active(job: Job) -> None:
    if job.status in TERMINAL:
        raise Conflict(f"job is already {job.status}")


def _require_current(job: Job, attempt: int) -> Lease:
    _require_active(job)
    current = job.current
    if not current or current.n != attempt:
        raise Conflict(f"attempt {attempt} is not the job's current attempt")
    return current


def dispatch(job: Job, lane: str, limit_ms: int, lease_grace_ms: int,
             now: float | None = None) -> tuple[Job, list[Event]]:
    """Hand the job to ``lane`` for at most ``limit_ms``; a fallback when an earlier attempt ended."""
    _require_active(job)
    if job.current:
        raise Conflict("the job already has an attempt in flight")
    now = time.time() if now is None else now
    n = len(job.attempts) + 1
    job.current = Lease(n=n, lane=lane, task_id=f"{job.job_id}.{n}", enqueued_at=now, started_at=None,
                        limit_ms=limit_ms, deadline=now + limit_ms / 1000,
                        lease_until=now + (limit_ms + lease_grace_ms) / 1000)
    events: list[Event] = []
    job.dispatches = (job.dispatches or 0) + 1
    if job.dispatches > 1:
        last = job.attempts[-1]
        events.append(("job.fallback", {"from": last.lane, "to": lane, "reason": last.reason,
                                        "limit_ms": limit_ms}))
    else:
        events.append(("attempt.enqueued", {"lane": lane, "attempt": n, "limit_ms": limit_ms}))
    return job, events


def start_attempt(job: Job, attempt: int, worker: str, now: float | None = None) -> tuple[Job, list[Event]]:
    current = _require_current(job, attempt)
    if current.started_at is not None:
        raise Conflict(f"attempt {attempt} was already started")
    current.started_at = time.time() if now is None else now
    current.worker = worker
    job.status = "running"
    return job, [("attempt.started", {"lane": current.lane, "attempt": attempt, "worker": worker})]


def finish_attempt(job: Job, attempt: int, outcome: str, reason: str, *, solver: str | None = None,
                   now: float | None = None) -> tuple[Job, list[Event]]:
    """Close the current attempt with ``outcome``; the job itself stays active for a fallback or an end."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    current = _require_current(job, attempt)
    now = time.time() if now is None else now
    since = current.started_at or current.enqueued_at
    record = Attempt(n=attempt, lane=current.lane, solver=solver, outcome=outcome,  # type: ignore[arg-type]
                     reason=reason, duration_ms=round((now - since) * 1000, 1),
                     queued_ms=round(((current.started_at or now) - current.enqueued_at) * 1000, 1))
    job.attempts.append(record)
    job.current = None
    return job, [(f"attempt.{outcome}", record.model_dump(exclude={"n"}) | {"attempt": attempt})]


def close_lease(job: Job, attempt: int, outcome: str, reason: str, *, solver: str | None = None,
                objective: float | None = None, now: float | None = None) -> tuple[Job, list[Event]]:
    """Close attempt ``attempt`` of a portfolio job, one of the leases racing side by side."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    _require_active(job)
    lease = next((item for item in job.racing or [] if item.n == attempt), None)
    if lease is None:
        raise Conflict(f"attempt {attempt} is not racing")
    now = time.time() if now is None else now
    since = lease.started_at or lease.enqueued_at
    record = Attempt(n=attempt, lane=lease.lane, solver=solver, outcome=outcome,  # type: ignore[arg-type]
                     reason=reason, duration_ms=round((now - since) * 1000, 1),
                     queued_ms=round(((lease.started_at or now) - lease.enqueued_at) * 1000, 1),
                     objective=objective)
    job.attempts.append(record)
    job.racing = [item for item in job.racing or [] if item.n != attempt] or None
    data = record.model_dump(exclude={"n"}) | {"attempt": attempt}
    return job, [(f"attempt.{outcome}", data)]


def skip_lane(job: Job, lane: str, reason: str) -> tuple[Job, list[Event]]:
    """Record a planned lane passed over without an attempt (e.g. too little budget left for it)."""
    _require_active(job)
    n = len(job.attempts) + len(job.racing or []) + 1  # a portfolio's racing attempts hold their numbers
    job.attempts.append(Attempt(n=n, lane=lane, solver=None, outcome="skipped", reason=reason,
                                duration_ms=0.0, queued_ms=0.0))
    return job, [("attempt.skipped", {"lane": lane, "outcome": "skipped", "reason": reason})]


def succeed(job: Job, result: dict[str, Any], solver: dict[str, Any], provenance: dict[str, Any],
            now: float | None = None) -> tuple[Job, list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    job.status, job.finished_at, job.result, job.solver = "succeeded", iso(now), result, solver
    _webhook_due(job, now)
    for name, value in provenance.items():
        setattr(job.provenance, name, value)
    return job, [("job.succeeded", {"solver": solver, "provenance": job.provenance.model_dump(),
                                    "result": result})]


def fail(job: Job, reason: str, now: float | None = None) -> tuple[Job, list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    job.status, job.finished_at, job.error, job.current = "failed", iso(now), reason, None
    _webhook_due(job, now)
    return job, [("job.failed", {"reason": reason})]


def cancel(job: Job, now: float | None = None) -> tuple[Job, list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    events: list[Event] = []
    if job.current:
        job, events = finish_attempt(job, job.current.n, "cancelled", "cancelled by the client", now=now)
    for lease in list(job.racing or []):
        job, closed = close_lease(job, lease.n, "cancelled", "cancelled by the client", now=now)
        events += closed
    job.status, job.finished_at, job.error = "cancelled", iso(now), "cancelled by the client"
    _webhook_due(job, now)
    return job, events + [("job.cancelled", {})]


# -- webhooks ------------------------------------------------------------------------------------------------

def webhook_id(job_id: str) -> str:
    return f"msg_{job_id}"


def awaiting_webhook(job_id: str) -> Webhook:
    """The webhook of an async job with a callback URL, from its admission until it ends."""
    return Webhook(id=webhook_id(job_id), state="waiting")


def _webhook_due(job: Job, now: float) -> None:
    """A job that ends makes its webhook due: the store puts it in the outbox in the same transaction."""
    if job.webhook is not None and job.webhook.state == "waiting":
        job.webhook.state, job.webhook.window_start = "pending", now


def redeliver(job: Job, now: float | None = None) -> tuple[Job, list[Event]]:
    """Make a finished job's webhook due again, with a fresh retry window."""
    if job.status not in TERMINAL:
        raise Conflict(f"job is {job.status}: it has not finished")
    if not job.request.get("callback_url"):
        raise Conflict("job has no callback_url")
    now = time.time() if now is None else now
    job.webhook = Webhook(id=webhook_id(job.job_id), state="pending", tries=0, window_start=now)
    return job, [("webhook.redeliver_requested", {"webhook_id": job.webhook.id})]


def record_delivery(job: Job, delivery: Delivery, outcome: Literal["delivered", "retry", "failed"],
                    next_attempt_at: float | None) -> tuple[Job, list[Event]]:
    """Log one delivery attempt and what follows it (delivered, a retry at ``next_attempt_at``, failed)."""
    webhook = job.webhook
    if webhook is None or webhook.state != "pending":
        raise Conflict("no webhook delivery is pending")
    webhook.tries += 1
    webhook.state = "pending" if outcome == "retry" else outcome
    job.deliveries = [*(job.deliveries or []), delivery]
    data = {"webhook_id": webhook.id, **delivery.model_dump(), "outcome": outcome,
            "next_attempt_at": iso(next_attempt_at) if next_attempt_at is not None else None}
    return job, [("webhook.attempted", data)]


# -- the job resource --------------------------------------------------------------------------------------

def _schema(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


class JobPlanStep(BaseModel):
    lane: Lane
    action: Literal["try", "skip"]
    reason: str


class JobAttempt(BaseModel):
    lane: Lane
    solver: str | None
    outcome: Outcome
    reason: str
    duration_ms: float
    queued_ms: float
    objective: float | None = None  # a portfolio attempt's recomputed objective (cost or energy)


class JobSolver(BaseModel):
    model_config = ConfigDict(extra="allow")

    lane: Lane
    id: str
    version: str


class JobProvenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    fingerprint: Annotated[str, _schema(pattern="^sha256:[0-9a-f]{64}$")]
    seed: int | None
    calibration: dict[str, Any] | None


class JobCostEstimate(BaseModel):
    model_config = ConfigDict(extra="allow")

    usd: Annotated[float, _schema(minimum=0)]
    basis: str


class JobRequestOptions(BaseModel):
    """The solve options shown back (not the problem, the seed or the callback URL)."""

    solver: Literal[("auto", *LANES)]  # type: ignore[valid-type]
    strategy: Literal["fallback", "portfolio"]
    cost_tier: Literal["standard", "premium"]
    metadata: dict[str, Any]
    priority: Literal["interactive", "batch"] | None = None


class JobDelivery(BaseModel):
    """A webhook delivery attempt: ``status`` is the receiver's HTTP status (null: no answer)."""

    attempt: Annotated[int, _schema(minimum=1)]
    at: Annotated[str, _schema(format="date-time")]
    status: int | None
    duration_ms: float
    error: str | None


class JobAudit(BaseModel):
    receipt_url: str


class ProviderQueueFigure(BaseModel):
    """The provider's own figure for its queue, as the lane's workers last published it."""

    source: str
    pending_jobs: Annotated[int, _schema(minimum=0)] | None = None
    wait_s: Annotated[float, _schema(minimum=0)] | None = None


class JobQueue(BaseModel):
    """Where a waiting job stands: its place in its lane's queue and when it should start and finish."""

    lane: Lane
    position: Annotated[int, _schema(minimum=1)]
    ahead: Annotated[int, _schema(minimum=0)]
    predicted_start_at: Annotated[str, _schema(format="date-time")]
    predicted_finish_at: Annotated[str, _schema(format="date-time")]
    basis: str
    provider: ProviderQueueFigure | None = None  # where the lane's provider reports its own queue


class JobDecision(BaseModel):
    """One planning decision (a lane dispatched or passed over) and the figures it used."""

    model_config = ConfigDict(extra="allow")

    at: Annotated[str, _schema(format="date-time")]
    lane: Lane
    action: Literal["dispatch", "skip"]
    share_ms: int
    remaining_ms: Annotated[int, _schema(minimum=0)]
    outlook: dict[str, Any] | None


class JobPortfolio(BaseModel):
    """A portfolio job's race: the winner and, per other lane, how much worse its objective was (null: it
    gave no feasible answer; ``lanes`` says what it did)."""

    model_config = ConfigDict(extra="allow")

    winner: Lane | None
    objective: float | None
    margins: dict[str, float | None]
    lanes: dict[str, dict[str, Any]]
    ended: str


class JobShadow(BaseModel):
    model_config = ConfigDict(extra="allow")

    lane: Lane
    job_id: str | None
    skipped: str | None = None


class JobView(BaseModel):
    """The job resource (``GET /api/v1/jobs/<id>``, the body of a sync solve), as the contract shows it."""

    model_config = ConfigDict(title="Job")

    job_id: Annotated[str, _schema(pattern=f"^{JOB_ID.pattern}$")]
    status: Status
    kind: Kind
    created_at: Annotated[str, _schema(format="date-time")]
    finished_at: Annotated[str, _schema(format="date-time")] | None
    latency_budget_ms: Annotated[int, _schema(minimum=1)]
    plan: list[JobPlanStep]
    attempts: list[JobAttempt]
    result: dict[str, Any] | None
    solver: JobSolver | None
    error: str | None
    provenance: JobProvenance
    cost_estimate: JobCostEstimate
    request: JobRequestOptions
    current_lane: Lane | None
    audit: JobAudit
    deliveries: list[JobDelivery]
    queue: JobQueue | None = None  # present while the job waits for a worker
    decision: list[JobDecision] = []  # present once a plan was made with the lanes' figures
    portfolio: JobPortfolio | None = None  # strategy portfolio: the winning lane and its margins
    shadow: list[JobShadow] = []  # shadow runs beside the plan: lane, their job id, or why none ran
    trace_id: Annotated[str, _schema(pattern="^[0-9a-f]{32}$")] | None = None  # with tracing on (OTLP)


_DERIVED = ("request", "current_lane", "audit", "deliveries", "queue", "decision", "portfolio", "shadow")  # computed below, not copied
_COPIED = frozenset(JobView.model_fields) - {"attempts", *_DERIVED}
_ATTEMPT_FIELDS = frozenset(JobAttempt.model_fields)


def public_view(job: Job, queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job resource as the contract shows it to its tenant: the fields of ``JobView``, taken from the
    record (private fields such as the tenant, the deadline, the lease and the raw request stay out).
    ``queue`` is where a waiting job stands, read from its lane by the caller."""
    record = job.model_dump()
    view = {k: v for k, v in record.items() if k in _COPIED or k == "attempts"}
    view["attempts"] = [{k: v for k, v in a.items() if k in _ATTEMPT_FIELDS} for a in record["attempts"]]
    view["request"] = {k: job.request.get(k) for k, field in JobRequestOptions.model_fields.items()
                       if field.is_required() or k in job.request}  # a job of an older version has no priority
    view["current_lane"] = job.current.lane if job.current else (job.racing[0].lane if job.racing else None)
    view["audit"] = {"receipt_url": f"/api/v1/audit/jobs/{job.job_id}/receipt"}
    view["deliveries"] = [delivery.model_dump() for delivery in job.deliveries or []]
    if queue is not None:  # only while the job waits; and jobs planned without figures have no decisions
        view["queue"] = queue
    if job.decisions:
        view["decision"] = list(job.decisions)
    if job.portfolio and "winner" in job.portfolio:
        view["portfolio"] = {k: job.portfolio[k] for k in JobPortfolio.model_fields}
    if job.shadow:
        view["shadow"] = list(job.shadow)
    return view
