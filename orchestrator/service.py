"""The orchestration core: admitting a job, running an attempt, expiring leases, cancelling.

Every edge is a thin adapter onto one call here: the Flask views translate HTTP into ``submit``,
``job_of`` and ``cancel``; the Celery lane tasks into ``run_attempt``; the watchdog into
``expire_leases``. The service takes its collaborators explicitly (the job store, lane health, an
``Enqueuer``, a ``LaneRuntime`` on workers) and plain configuration values, and imports no edge: no
Flask, no Celery, no settings module. Its refusals are exceptions that say what happened; each edge
maps them to its own vocabulary (HTTP statuses, log lines).
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Callable, Mapping, Protocol, TypeVar

import redis

from jobs import model
from jobs.model import Job
from jobs.spend import SpendBook, reason as quota_reason, seconds_to_next
from jobs.store import GuardRefused, JobStore
from orchestrator import portfolio, shadow
from routing import fallback, waiting
from routing.estimates import job_cost_estimate, lane_costs, qpu_prior_run_s
from routing.plan import LaneStatus, PlanStep, plan_lanes
from routing.policy import policy_input, provider_region
from routing.predict import Outlook, drain_s
from routing.signals import LazyOutlooks
from routing.telemetry import problem_class
from solvers.base import LaneLimits, SolverRefused
from solvers.objective import loggable, score
from solvers.problems import CanonicalProblem, canonical_json, canonical_problem, parse_problem
from solvers.registry import choose_solver

T = TypeVar("T")
REDIS_PATIENCE_S = 30.0  # how long a task waits out Redis before its attempt is left to the watchdog
ALARM_SLACK_S = 0.25
SHADOW_MIN_BUDGET_MS = 10_000  # a shadow run's own limit: a sync budget would time out every slow lane it measures  # solvers honour their own limit; the runtime's alarm is for one that does not


# -- what the service needs from the outside --------------------------------------------------------

class Enqueuer(Protocol):
    """Puts a job's current attempt on its lane's queue (Celery's implementation lives in workers/).

    An enqueuer whose broker is the job store's Redis may also offer ``publisher(job)``: the job's
    message, ready to be written as part of a transaction on that Redis (a callable taking the
    pipeline), so that a new job and its first message are stored together or not at all.
    """

    def enqueue(self, job: Job) -> None: ...

    def revoke(self, task_id: str) -> None: ...


class LaneHealthSource(Protocol):
    def statuses(self) -> Mapping[str, LaneStatus]: ...


class LaneSignalsSource(Protocol):
    """The lanes' figures for predictive planning and breakers (``routing.signals.LaneSignals``)."""

    def outlooks(self, lanes: list[str], problem_class: str | None, job_id: str) -> Mapping[str, Outlook]: ...

    def queue(self, lane: str, problem_class: str | None, job_id: str,
              prior_s: float | None = None) -> dict[str, Any] | None: ...


class PolicyGate(Protocol):
    """The policy in force (``policy.source.PolicySource``): a decision per policy input."""

    def decide(self, policy_input: Mapping[str, Any]) -> Any: ...


class Caller(Protocol):
    """Who asks: an authenticated client (``api.tokens.Principal`` is one)."""

    client_id: str
    tenant: str
    scopes: frozenset[str]


class LaneRuntime(Protocol):
    """What a lane worker provides to run attempts: its solvers and limits, a time limit around the
    solver call, and the fault drills of QGATE_FAULTS."""

    def solvers(self, lane: str) -> list[Any]: ...

    def limits(self, lane: str) -> LaneLimits: ...

    def time_limit(self, deadline: float,
                   cancelled: Callable[[], bool] | None = None) -> AbstractContextManager[None]: ...

    def before_solve(self, lane: str) -> None: ...


class AttemptTimeLimit(BaseException):
    """Raised by a runtime's time limit when the solver outlives its attempt's deadline.

    A BaseException, like KeyboardInterrupt, because it is raised asynchronously inside solver and SDK
    code whose ``except Exception`` blocks would otherwise swallow it or re-wrap it as their own error
    (the emulated QPU turned it into "QpuError: simulation error", recording a timeout as a failure).
    """


class AttemptCancelled(BaseException):
    """Raised by a runtime's cancellation watch inside the solver once the job has been cancelled
    (a BaseException for the same reason as AttemptTimeLimit)."""


class InjectedFault(Exception):
    """A failure drawn from the fault drills, for tests and chaos runs."""


@dataclass(frozen=True)
class ServiceConfig:
    """Plain configuration values (the edges read them from settings)."""

    lease_grace_ms: int = 2000
    max_active_jobs_per_tenant: int = 1000
    standard_tier_max_usd: float = 0.0
    qpu_price_per_task_usd: float = 0.0
    qpu_price_per_shot_usd: float = 0.0
    sync_threshold_ms: int = 1000  # budgets up to this are answered synchronously (no webhook), interactive
    tenant_queue_share: float = 0.5  # a busy lane whose waiting jobs are at least this much the tenant's: 429
    qpu_provider: str = "emulated"  # the qpu lane's provider and region, as the policy sees them
    qpu_region: str = ""

    @classmethod
    def of(cls, values: Any) -> "ServiceConfig":
        """The values of an object that has them by the same names (the edges pass their Settings)."""
        return cls(**{item.name: getattr(values, item.name) for item in fields(cls)})


# -- refusals --------------------------------------------------------------------------------------

class Refused(Exception):
    """The service will not do what was asked; ``message`` is safe to show the caller."""

    def __init__(self, message: str, *, reasons: list[dict[str, Any]] | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message, self.reasons, self.retry_after_s = message, reasons, retry_after_s


class PolicyRefused(Refused):
    """The policy refuses the request as a whole (a lane named without its scope, a tier not granted)."""


class QuotaExceeded(Refused):
    """Too many unfinished jobs for the tenant."""


class TenantShareFull(QuotaExceeded):
    """Every lane the job could use is predicted too busy, and on each the tenant's own jobs are at least
    its share of those waiting: the queue it would wait behind is mostly its own (429, not 503)."""


class NoLaneCanSolve(Refused):
    """Every lane of the plan refused the problem (scope, kind, capacity, cost tier)."""


class NoLaneAvailable(Refused):
    """A lane could solve it, but none of those has a live worker now."""


class LanesPredictedBusy(NoLaneAvailable):
    """Every lane that could solve it is predicted not to finish within the budget, given the queues
    ahead, or has its breaker open: refused now rather than accepted to fail a budget later."""


class IdempotencyConflict(Refused):
    """The key was used with another request, or that request is still being admitted."""


class JobNotFound(Refused):
    """No such job for this tenant (another tenant's job is not found either)."""


class JobAlreadyFinished(Refused):
    """The job ended before the request could change it."""


# -- what a submission is ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Submission:
    """A validated solve request: the problem model, the options, the budget and its idempotency key."""

    problem: Any
    budget_ms: int
    options: dict[str, Any]
    idempotency_key: str | None = None
    body: Any = None
    trace_id: str | None = None  # the W3C trace the submission runs in, when tracing is on

    @cached_property
    def canonical(self) -> CanonicalProblem:
        """The problem's JSON and canonical bytes, made once however many jobs (shadows) store it."""
        return canonical_problem(self.problem)

    @property
    def solver(self) -> str:
        return self.options.get("solver", "auto")

    @property
    def cost_tier(self) -> str:
        return self.options.get("cost_tier", "standard")

    def request_hash(self) -> str:
        """What an idempotency key binds: the body as sent and the budget, in canonical JSON."""
        import hashlib

        return hashlib.sha256(canonical_json({"body": self.body, "budget_ms": self.budget_ms})).hexdigest()


@dataclass
class AttemptOutcome:
    outcome: str
    reason: str = ""
    solver: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None  # a cancelled attempt: where it stopped, for the audit event


@dataclass
class JobService:
    store: JobStore
    enqueuer: Enqueuer
    config: ServiceConfig = field(default_factory=ServiceConfig)
    lanes: LaneHealthSource | None = None
    log: Any = None
    signals: LaneSignalsSource | None = None
    policy: PolicyGate | None = None  # None: the built-in scope and cost-tier rules (QGATE_POLICY=off)
    spend: SpendBook | None = None  # QPU spend allowances; None: none enforced

    # -- admission ---------------------------------------------------------------------------------

    def submit(self, caller: Caller, submission: Submission) -> tuple[Job, bool]:
        """Admit a job: plan its lanes, store it with its first attempt and events, enqueue it.

        Returns the job and whether it is an earlier job replayed for the same idempotency key.
        """
        job_id = model.new_job_id()
        key = submission.idempotency_key
        if key:
            existing = self._claim(caller.tenant, key, submission.request_hash(), job_id)
            if existing is not None:
                return existing, True
        try:
            return self._admit(job_id, caller, submission), False
        except BaseException:
            if key:
                self.store.release_idempotency(caller.tenant, key)
            raise

    def _claim(self, tenant: str, key: str, request_hash: str, job_id: str) -> Job | None:
        bound = self.store.claim_idempotency(tenant, key, request_hash, job_id)
        if bound is None:
            return None
        bound_job, bound_hash = bound
        if bound_hash != request_hash:
            raise IdempotencyConflict("Idempotency-Key was already used with a different request")
        job = self.store.get(bound_job) if model.is_job_id(bound_job) else None
        if job is None:
            raise IdempotencyConflict("Idempotency-Key is being used by a request still in progress; retry")
        if job.tenant != tenant:
            raise IdempotencyConflict("Idempotency-Key was already used with a different request")
        return job

    def plan(self, caller: Caller, submission: Submission) -> tuple[list[PlanStep], dict[str, float]]:
        plan, costs, _ = self._plan(caller, submission)
        return plan, costs

    def authorize(self, caller: Caller, submission: Submission) -> Any:
        """The policy's decision on the request (None without a policy); PolicyRefused when it refuses the
        request as a whole. Decisions are cached per input, so the plan's own call is a cache hit."""
        if self.policy is None:
            return None
        costs = lane_costs(submission.problem, self.config.qpu_price_per_task_usd,
                           self.config.qpu_price_per_shot_usd)
        decision = self.policy.decide(self._policy_input(caller, submission, costs))
        if decision.refusal:
            raise PolicyRefused(decision.refusal)
        return decision

    def _policy_input(self, caller: Caller, submission: Submission, costs: Mapping[str, float]) -> dict[str, Any]:
        config = self.config
        return policy_input(tenant=caller.tenant, scopes=caller.scopes, solver=submission.solver,
                            cost_tier=submission.cost_tier, metadata=submission.options.get("metadata"),
                            lane_cost_usd=costs, qpu_provider=config.qpu_provider,
                            qpu_region=provider_region(config.qpu_provider, config.qpu_region or None),
                            standard_tier_max_usd=config.standard_tier_max_usd)

    def _qpu_guards(self, caller: Caller, submission: Submission, costs: Mapping[str, float]) -> list[Any]:
        if self.spend is None:
            return []
        metadata = submission.options.get("metadata") or {}
        unit = metadata.get("business_unit")
        shots = int(getattr(submission.problem, "shots", 0) or 0)
        return self.spend.guards(caller.tenant, unit if isinstance(unit, str) and unit else None,
                                 costs.get("qpu", 0.0), shots)

    def _plan(self, caller: Caller, submission: Submission, quota_skip: str | None = None
              ) -> tuple[list[PlanStep], dict[str, float], Any]:
        costs = lane_costs(submission.problem, self.config.qpu_price_per_task_usd,
                           self.config.qpu_price_per_shot_usd)
        decision = self.authorize(caller, submission)
        statuses = self.lanes.statuses() if self.lanes is not None else {}
        plan = plan_lanes(submission.problem, submission.solver, caller.scopes, statuses,
                          cost_tier=submission.cost_tier, lane_cost_usd=costs,
                          standard_tier_max_usd=self.config.standard_tier_max_usd, policy=decision)
        if self.spend is not None and any(s.lane == "qpu" and s.action == "try" for s in plan):
            if quota_skip is None:
                short = self.spend.shortfall(self._qpu_guards(caller, submission, costs))
                quota_skip = short[1] if short else None
            if quota_skip is not None:
                plan = [PlanStep("qpu", "skip", quota_skip) if s.lane == "qpu" else s for s in plan]
                plan = _renumber(plan)
        return plan, costs, decision

    def _admit(self, job_id: str, caller: Caller, submission: Submission) -> Job:
        quota_skip = None
        for _ in range(3):  # a reservation raced past by others is re-planned without the qpu lane
            try:
                return self._admit_once(job_id, caller, submission, quota_skip)
            except _ReservationRaced as raced:
                quota_skip = raced.reason
        raise QuotaExceeded("quota: the QPU allowance is contended; retry", retry_after_s=1)

    def _admit_once(self, job_id: str, caller: Caller, submission: Submission, quota_skip: str | None) -> Job:
        plan, costs, decision = self._plan(caller, submission, quota_skip)
        _require_runnable(plan)
        shadows = self._shadow_plans(caller, submission)
        problem = submission.problem
        options = dict(submission.options)
        if not options.get("priority"):
            options["priority"] = "interactive" if submission.budget_ms <= self.config.sync_threshold_ms else "batch"
        job, events = model.new_job(job_id=job_id, tenant=caller.tenant, client_id=caller.client_id,
                                    kind=problem.kind, budget_ms=submission.budget_ms,
                                    request=options, plan=[step.as_dict() for step in plan],
                                    fingerprint=submission.canonical.fingerprint, cost_estimate=job_cost_estimate(plan, costs),
                                    problem_class=problem_class(problem))
        if decision is not None:  # the audit names the policy that planned the job, and what it decided
            events[0][1]["policy"] = {"sha256": decision.bundle_sha256, "reasons": decision.reasons()}
        if submission.trace_id:
            job.trace_id = events[0][1]["trace_id"] = submission.trace_id
        if any(step.lane == "qpu" and step.action == "try" for step in plan):
            prior = qpu_prior_run_s(problem, self.config.qpu_provider)
            job.run_prior_s = {"qpu": prior} if prior is not None else None
        if submission.options.get("callback_url") and submission.budget_ms > self.config.sync_threshold_ms:
            job.webhook = model.awaiting_webhook(job_id)
        if shadows:
            job.shadow = [{"lane": lane, "job_id": shadow_id, "skipped": skipped}
                          for lane, shadow_id, skipped, _ in shadows]
        outlooks = self._outlooks(job) if self.signals is not None else None
        if portfolio.is_portfolio(job):  # every lane at once, the whole budget each: only breakers pass one over
            job, dispatched = portfolio.start(job, self.config.lease_grace_ms, lane_cost_usd=costs,
                                              outlooks=outlooks)
            if fallback.passed_over_only(job):
                raise self._busy(job, outlooks or {})
            if job.status == "failed":  # each lane's reason with its loc, as _require_runnable gives them
                raise NoLaneCanSolve(job.error or "no lane can solve this problem within its budget",
                                     reasons=[{"loc": ["plan", a.lane], "msg": a.reason} for a in job.attempts])
        else:
            job, dispatched = fallback.start(job, self.config.lease_grace_ms, outlooks=outlooks)
            if fallback.passed_over_only(job):
                raise self._busy(job, outlooks or {})
        publish = self._publisher(job)
        on_qpu = (job.current is not None and job.current.lane == "qpu") or any(
            lease.lane == "qpu" for lease in job.racing or [])  # a portfolio's qpu attempt reserves too
        guards = self._qpu_guards(caller, submission, costs) if on_qpu else []
        writes = self._reserving(job_id, caller.tenant, guards, publish)
        limit = self.config.max_active_jobs_per_tenant
        try:
            created = self.store.create(job, submission.canonical.data, events + dispatched, also=writes,
                                        max_active=limit, guards=guards, canonical=submission.canonical.canonical)
        except GuardRefused as refused:
            assert self.spend is not None
            guard = guards[refused.index]
            raise _ReservationRaced(quota_reason(guard, self.spend.used(guard))) from None
        if not created:
            raise QuotaExceeded(f"quota: at most {limit} unfinished jobs per tenant", retry_after_s=5)
        if publish is None:
            for lease in job.racing or []:
                self._enqueue(job, lease)
            self._enqueue(job)
        for lane, shadow_id, _, step in shadows:
            if step is not None:
                self._start_shadow(caller, submission, job, lane, shadow_id, step)
        return job

    def _reserving(self, job_id: str, tenant: str, guards: list[Any],
                   publish: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
        """The creating script's own writes: the spend reservation (after its guards) and the first message."""
        if not guards or self.spend is None:
            return publish
        spend, ttl = self.spend, self.store.ttl_s

        def writes(pipe: Any) -> None:
            spend.reserve(pipe, job_id, tenant, guards, ttl)
            if publish is not None:
                publish(pipe)

        return writes

    # -- shadow runs ----------------------------------------------------------------------------------

    def _shadow_plans(self, caller: Caller, submission: Submission) -> list[tuple[str, str | None, str | None, Any]]:
        """The shadow lanes asked for (the body's ``shadow``, else the tenant's default): per lane its
        job id and its plan step, or why it will not run (the lane refused the problem, no live worker)."""
        asked = submission.options.get("shadow")
        if asked is None:
            try:
                asked = shadow.defaults(self.store.redis, caller.tenant)
            except redis.RedisError:
                asked = []
        out: list[tuple[str, str | None, str | None, Any]] = []
        for lane in asked:
            if f"solver:{lane}" not in caller.scopes:  # a default for a lane the caller may not use: not run
                out.append((lane, None, f"scope: the client lacks solver:{lane}", None))
                continue
            steps, _ = self.plan(caller, Submission(submission.problem, submission.budget_ms,
                                                    {**submission.options, "solver": lane}))
            step = next(item for item in steps if item.lane == lane)
            if step.action != "try":
                out.append((lane, None, step.reason, None))
            else:
                out.append((lane, model.new_job_id(), None, step))
        return out

    def _start_shadow(self, caller: Caller, submission: Submission, served: Job, lane: str, shadow_id: str,
                      step: PlanStep) -> None:
        """A shadow run as a job of its own, after the served job is stored: one lane, the served job's
        budget but at least SHADOW_MIN_BUDGET_MS, batch priority, no webhook, outside the quota. A shadow that cannot start is logged, never raised."""
        problem = submission.problem
        options = {**submission.options, "solver": lane, "strategy": "fallback", "priority": "batch",
                   "callback_url": None, "shadow": None}
        try:
            costs = lane_costs(problem, self.config.qpu_price_per_task_usd, self.config.qpu_price_per_shot_usd)
            job, events = model.new_job(job_id=shadow_id, tenant=caller.tenant, client_id=caller.client_id,
                                        kind=problem.kind, budget_ms=max(submission.budget_ms, SHADOW_MIN_BUDGET_MS),
                                        request=options, plan=[step.as_dict()],
                                        fingerprint=served.provenance.fingerprint,
                                        cost_estimate=job_cost_estimate([step], costs),
                                        problem_class=served.problem_class)
            job.shadow_of = served.job_id
            events[0][1]["shadow_of"] = served.job_id
            job, dispatched = fallback.start(job, self.config.lease_grace_ms)
            publish = self._publisher(job)
            # a shadow on the qpu lane spends the tenant's QPU allowance like any qpu attempt: reserved here
            guards = self._qpu_guards(caller, submission, costs) if lane == "qpu" else []
            self.store.create(job, submission.canonical.data, events + dispatched,
                              also=self._reserving(shadow_id, caller.tenant, guards, publish), guards=guards,
                              canonical=submission.canonical.canonical)
            if publish is None:
                self._enqueue(job)
        except Exception as exc:  # the served job stands whatever happens to its shadow
            if self.log is not None:
                self.log.warning("shadow_not_started", job_id=served.job_id, lane=lane,
                                 error=f"{type(exc).__name__}: {exc}")

    def _busy(self, job: Job, outlooks: Mapping[str, Outlook]) -> LanesPredictedBusy | TenantShareFull:
        queued = [a.lane for a in job.attempts if a.reason.startswith("predicted:")]
        shares = waiting.tenant_shares(self.store.redis, queued, job.tenant) if queued else {}
        return _busy_refusal(job, outlooks, shares, self.config.tenant_queue_share)

    def _outlooks(self, job: Job | None) -> dict[str, Outlook]:
        """Fresh figures of the lanes the job may still try (not the one in flight, none already tried)."""
        if job is None or self.signals is None:
            return {}
        handled = {a.lane for a in job.attempts} | ({job.current.lane} if job.current else set())
        lanes = [step.lane for step in job.plan if step.action == "try" and step.lane not in handled]
        return dict(self.signals.outlooks(lanes, job.problem_class, job.job_id))

    def _later_outlooks(self, job_id: str, job: Job | None = None) -> LazyOutlooks | None:
        """Outlooks for a fallback, read only if the transition gets that far."""
        if self.signals is None:
            return None
        return LazyOutlooks(lambda: self._outlooks(job if job is not None else self.store.get(job_id)))

    def _publisher(self, job: Job) -> Callable[[Any], None] | None:
        """The job's first message as a write for its creating transaction, where the enqueuer offers one;
        None means publish after the job is stored (``_enqueue``)."""
        prepare = getattr(self.enqueuer, "publisher", None)
        if prepare is None or job.current is None:
            return None
        try:
            return prepare(job)
        except Exception as exc:  # the broker is away while the message is built: fall back to _enqueue
            if self.log is not None:
                self.log.warning("publisher_unavailable", job_id=job.job_id, error=f"{type(exc).__name__}: {exc}")
            return None

    def _enqueue(self, job: Job, lease: Any = None) -> None:
        """Publish the job's current attempt (or ``lease``, a portfolio's racing attempt). One that cannot
        be published is not lost: its lease is in the watchdog's set, which concludes it when it runs out."""
        if lease is None and job.current is None:
            return
        try:
            if lease is None:
                self.enqueuer.enqueue(job)
            else:
                self.enqueuer.enqueue(job, lease)  # type: ignore[call-arg]
        except Exception as exc:  # the broker is away (kombu's OperationalError and friends)
            if self.log is not None:
                self.log.error("enqueue_failed", job_id=job.job_id, error=f"{type(exc).__name__}: {exc}")

    # -- reading and cancelling -----------------------------------------------------------------------

    def job_of(self, tenant: str, job_id: str) -> Job:
        """The job if it belongs to ``tenant``; JobNotFound alike for missing and foreign jobs."""
        job = self.store.get(job_id) if model.is_job_id(job_id) else None
        if job is None or job.tenant != tenant:
            raise JobNotFound("job not found")
        return job

    def queue_of(self, job: Job) -> dict[str, Any] | None:
        """Where the job waits in its lane's queue and when it should start and finish; None unless an
        attempt of it is waiting for a worker."""
        current = job.current
        if self.signals is None or job.finished or current is None or current.started_at is not None:
            return None
        return self.signals.queue(current.lane, job.problem_class, job.job_id,
                                  prior_s=(job.run_prior_s or {}).get(current.lane))

    def cancel(self, tenant: str, job_id: str) -> Job:
        before = self.job_of(tenant, job_id)
        tasks = [lease.task_id for lease in ([before.current] if before.current else []) + list(before.racing or [])]
        try:
            job = self.store.transition(job_id, model.cancel)
        except model.Conflict:
            now = self.store.get(job_id)
            status = now.status if now is not None else "finished"
            raise JobAlreadyFinished(f"job already {status}") from None
        for task_id in tasks:
            try:
                self.enqueuer.revoke(task_id)
            except Exception:  # a queued copy is refused as stale anyway
                pass
        return job

    # -- the watchdog ---------------------------------------------------------------------------------

    def expire_leases(self, now: float | None = None) -> int:
        """Conclude every expired lease once; returns how many jobs moved."""
        now = time.time() if now is None else now
        moved = 0
        for job_id in self.store.due_leases(now):
            try:
                job = self._expire(job_id, now)
            except KeyError:
                self.store.forget_lease(job_id)
                continue
            except model.Conflict:
                continue
            moved += 1
            if self.log is not None:
                self.log.warning("lease_expired", job_id=job_id, status=job.status,
                                 reason=job.attempts[-1].reason)
            self._enqueue(job)
        return moved

    def _expire(self, job_id: str, now: float) -> Job:
        def expire(job: Job, grace: int) -> tuple[Job, list[model.Event]]:
            if portfolio.is_portfolio(job):
                return portfolio.expire(job, grace, now=now)
            return fallback.expire_lease(job, grace, now=now, outlooks=self._later_outlooks(job_id))

        return self.store.transition(job_id, expire, self.config.lease_grace_ms)

    # -- an attempt on a lane worker ------------------------------------------------------------------

    def run_attempt(self, lane: str, job_id: str, attempt: int, worker: str, runtime: LaneRuntime) -> str:
        """Run attempt ``attempt`` of ``job_id`` on ``lane``; returns its outcome (or ``stale``)."""
        grace = self.config.lease_grace_ms

        def begin(job: Job) -> tuple[Job, list[model.Event]]:
            if portfolio.is_portfolio(job):
                return portfolio.begin(job, attempt, worker, grace)
            return fallback.begin_attempt(job, attempt, worker, grace, outlooks=self._later_outlooks(job_id))

        try:
            job = _with_redis(lambda: self.store.transition(job_id, begin),
                              time.time() + REDIS_PATIENCE_S, "start the attempt", self.log)
        except (model.Conflict, KeyError) as exc:
            self._info("attempt_stale", reason=str(exc))
            return "stale"
        current = _lease_of(job, attempt)
        if not current or current.started_at is None:
            self._info("attempt_expired_in_queue", reason=job.attempts[-1].reason, status=job.status)
            self._enqueue(job)
            return "timeout"
        self._info("attempt_started", tenant=job.tenant)
        started = time.time()
        done = self._solve(lane, job_id, job, runtime, current)
        if done.outcome == "cancelled":  # the job was concluded by the cancel itself; say that the work stopped
            stopped = dict(done.stopped or {}, ran_ms=round((time.time() - started) * 1000, 1))
            _with_redis(lambda: self.store.record(job, "attempt.stopped", stopped), time.time() + 5,
                        "record the stop", self.log)
            self._info("attempt_stopped", **stopped)
            return "cancelled"
        try:
            job = self._conclude(job_id, attempt, done, current.lease_until, job)
        except (model.Conflict, KeyError) as exc:
            self._info("attempt_discarded", outcome=done.outcome, reason=str(exc))
            return "stale"
        self._info("attempt_finished", outcome=done.outcome, reason=done.reason, status=job.status)
        self._enqueue(job)
        return done.outcome

    def _conclude(self, job_id: str, attempt: int, done: AttemptOutcome, until: float, job: Job) -> Job:
        def conclude(outcome: AttemptOutcome) -> Callable[[], Job]:
            if portfolio.is_portfolio(job):
                return lambda: self.store.transition(
                    job_id, portfolio.conclude, attempt, outcome.outcome, outcome.reason, solver=outcome.solver,
                    result=outcome.result, provenance=outcome.provenance, calibration=outcome.calibration)
            return lambda: self.store.transition(
                job_id, fallback.conclude_attempt, attempt, outcome.outcome, outcome.reason,
                self.config.lease_grace_ms, solver=outcome.solver, result=outcome.result,
                provenance=outcome.provenance, calibration=outcome.calibration,
                outlooks=self._later_outlooks(job_id, job))

        try:
            return _with_redis(conclude(done), until, "conclude the attempt", self.log)
        except ValueError as exc:  # the answer holds what JSON cannot carry: the attempt failed, not the job
            failed = AttemptOutcome("failed", f"the answer cannot be stored: {exc}"[:300], solver=done.solver)
            return _with_redis(conclude(failed), until, "conclude the attempt", self.log)

    def _solve(self, lane: str, job_id: str, job: Job, runtime: LaneRuntime, current: Any) -> AttemptOutcome:
        solver_info = None
        deadline = current.deadline
        seed = job.request.get("seed")
        if portfolio.is_portfolio(job):  # a racing attempt stops when the race ends, whoever ends it
            stopped: Callable[[], bool] = lambda: self.store.attempt_stopped(job_id, current.n)
        else:
            stopped = lambda: self.store.is_cancelled(job_id)
        try:
            data = _with_redis(lambda: self.store.problem(job_id), deadline, "read the problem", self.log)
            problem = parse_problem(data)
            with runtime.time_limit(deadline + ALARM_SLACK_S, cancelled=stopped):
                runtime.before_solve(lane)
                solver, verdict = choose_solver(lane, problem, runtime.limits(lane), runtime.solvers(lane))
                if solver is None:
                    return AttemptOutcome("skipped", verdict.reason)
                solver_info = {"lane": lane, "id": solver.id, "version": solver.version}
                time_left = deadline - time.time() - fallback.MIN_RUN_S
                if time_left <= 0:
                    return AttemptOutcome("timeout", "the attempt's time limit was reached before its solver "
                                                     "started", solver_info)
                solution = solver.solve(problem, time_limit_s=time_left, seed=seed)
            result = score(problem, solution.result)
            details = loggable(solution.details)
            calibration = loggable(solution.calibration) if solution.calibration else None
            provenance = {"seed": details.get("seed", seed), "solver_details": details,
                          "calibration": _calibration_reference(calibration)}
            return AttemptOutcome("succeeded", "", solver_info, result, provenance, calibration)
        except AttemptTimeLimit:
            return AttemptOutcome("timeout", f"time limit of {current.limit_ms} ms reached", solver_info)
        except AttemptCancelled as exc:
            stopped = {"lane": lane, "attempt": current.n, "solver": solver_info,
                       "provider_job": getattr(exc, "provider_job", None)}
            return AttemptOutcome("cancelled", "cancelled by the client", solver_info, stopped=stopped)
        except SolverRefused as exc:
            return AttemptOutcome("skipped", str(exc), solver_info)
        except TimeoutError as exc:
            return AttemptOutcome("timeout", str(exc) or "the solver ran out of time", solver_info)
        except InjectedFault as exc:
            return AttemptOutcome("failed", str(exc), solver_info)
        except Exception as exc:  # any solver error ends this attempt, never the job: the next lane takes over
            if self.log is not None:
                self.log.exception("attempt_error")
            return AttemptOutcome("failed", f"{type(exc).__name__}: {exc}"[:500], solver_info)

    def _info(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.info(event, **fields)


def _lease_of(job: Job, attempt: int) -> Any:
    """Attempt ``attempt`` in flight: the job's current one, or one of a portfolio's racing attempts."""
    if job.current is not None and job.current.n == attempt:
        return job.current
    return next((lease for lease in job.racing or [] if lease.n == attempt), None)


def _calibration_reference(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """How a job names the device calibration it ran under: the snapshot itself is stored once."""
    if not snapshot:
        return None
    return {"sha256": snapshot.get("sha256"), "backend": snapshot.get("backend"),
            "last_update_date": snapshot.get("last_update_date")}


class _ReservationRaced(Exception):
    """Other submits reserved the allowance between the plan's look and the admission script."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _renumber(plan: list[PlanStep]) -> list[PlanStep]:
    """Try reasons after a lane was skipped late: the first lane tried is the ``first lane``."""
    out, first = [], True
    for step in plan:
        if step.action == "try":
            out.append(PlanStep(step.lane, "try", "first lane" if first else "fallback"))
            first = False
        else:
            out.append(step)
    return out


def _require_runnable(plan: list[PlanStep]) -> None:
    if any(step.action == "try" for step in plan):
        return
    reasons = [{"loc": ["plan", step.lane], "msg": step.reason} for step in plan]
    quota = [step for step in plan if step.reason.startswith("quota:")]
    if quota:  # the qpu lane was the only one, and its allowance does not hold the estimate: 429
        window = "m" if "this month" in quota[0].reason else "d"
        raise QuotaExceeded(quota[0].reason, reasons=reasons, retry_after_s=seconds_to_next(window, time.time()))
    if any(step.reason.startswith("health:") for step in plan):
        raise NoLaneAvailable("no live worker can take this problem now", reasons=reasons, retry_after_s=5)
    raise NoLaneCanSolve("no lane can solve this problem", reasons=reasons)


def _busy_refusal(job: Job, outlooks: Mapping[str, Outlook], shares: Mapping[str, tuple[int, int]],
                  share: float) -> LanesPredictedBusy | TenantShareFull:
    """503 when other tenants' work fills the lanes; 429 when, on every lane passed over for its queue,
    the tenant's own waiting jobs are at least ``share`` of those waiting (a lane whose breaker is open
    says nothing about anyone's share and does not count either way)."""
    reasons = [{"loc": ["plan", a.lane], "msg": a.reason} for a in job.attempts]
    looks = [outlooks[a.lane] for a in job.attempts if a.lane in outlooks]
    retry = min(max(math.ceil(drain_s(looks)), 1), 300)
    own = {lane: counts for lane, counts in shares.items() if counts[1] > 0}
    if own and all(mine >= share * total for mine, total in own.values()):
        said = "; ".join(f"{mine} of the {total} jobs waiting on the {lane} lane are yours"
                         for lane, (mine, total) in own.items())
        return TenantShareFull(f"quota: your own queued jobs fill the lanes this job needs ({said}); "
                               f"retry when they have run", reasons=reasons, retry_after_s=retry)
    return LanesPredictedBusy("no lane can finish this job within its budget now", reasons=reasons,
                              retry_after_s=retry)


def _with_redis(action: Callable[[], T], until: float, what: str, log: Any = None) -> T:
    """Run ``action``, retrying while Redis is restarting, paused or failing over, until ``until``.

    Past ``until`` the attempt's lease is over and the watchdog concludes it, so giving up then loses
    nothing; raising earlier would end the task with an error while Redis is merely away.
    """
    delay = 0.1
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            if time.time() + delay >= until:
                raise
            if log is not None:
                log.warning("redis_unavailable", doing=what, error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
