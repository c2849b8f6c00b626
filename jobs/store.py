"""Jobs in Redis: every state change and its audit events are written in one MULTI/EXEC.

A job is stored as the JSON of ``jobs.model.Job`` (``model_dump``): the same document, key for key, that
the job dicts of earlier versions were stored as, so records written before and after the change read
alike and no migration is needed.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Iterable, Protocol

import redis

from audit.canonical import canonical_json
from audit.channel import emit
from jobs.model import TERMINAL, Event, Job
from telemetry.metrics import count_events

LEASES = "qgate:leases"
WEBHOOKS_DUE = "qgate:webhooks:due"  # the webhook outbox: job id -> when its next delivery is due (ms)
Transition = Callable[..., tuple[Job, list[Event]]]


class Observer(Protocol):
    """Writes of its own added to every job change, in the same MULTI (lane telemetry, the waiting
    sets, breakers): ``before`` is the job as it was (None for a new job). ``prepare`` runs before the
    MULTI, where an observer may WATCH and read keys of its own; what it returns is passed back."""

    def prepare(self, pipe: Any, before: Job, events: list[Event]) -> Any: ...

    def observe(self, pipe: Any, before: Job | None, job: Job, events: list[Event], now: float,
                prepared: Any = None) -> None: ...


def job_key(job_id: str) -> str:
    return f"qgate:job:{job_id}"


def problem_key(job_id: str) -> str:
    return f"qgate:job:{job_id}:problem"


def canonical_problem_key(fingerprint: str) -> str:
    """The content-addressed copy of a problem: its canonical JSON under its fingerprint (``sha256:<hex>``)."""
    return f"qgate:problem:{fingerprint}"


def done_key(job_id: str) -> str:
    return f"qgate:job:{job_id}:done"


def active_key(tenant: str) -> str:
    return f"qgate:tenant:{tenant}:active"


def calibration_key(digest: str) -> str:
    return f"qgate:calibration:{digest}"


def idempotency_key(tenant: str, key: str) -> str:
    """A Redis key per (tenant, client key) that no other pair can produce: both parts are hashed with a
    length prefix, so ``("acme:k2", "y")`` and ``("acme", "k2:y")`` land on different keys."""
    digest = hashlib.sha256(f"{len(tenant)}:{tenant}\n{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"qgate:idem:{digest}"


def _dumps(record: dict[str, Any] | Job) -> str:
    """Strict JSON: a NaN or infinity is refused here (ValueError) rather than stored, answered as
    invalid JSON, and sent to the audit log. A job is dumped in Python mode, which keeps a NaN a NaN
    (JSON mode would quietly turn one inside ``result`` into null)."""
    return json.dumps(record.model_dump() if isinstance(record, Job) else record, allow_nan=False)


def _load_job(raw: str | bytes) -> Job:
    return Job.model_validate_json(raw)


# ARGV: the tenant's quota (-1: none); the number of spend guards, each as five arguments (usage hash,
# reserved field, spent field, amount, limit: refused unless reserved + spent + amount <= limit); then each
# command as its argument count and its arguments. Returns 1 (written), 0 (quota) or -k (guard k refused).
_GUARDED_WRITES = """
local limit = tonumber(ARGV[1])
if limit >= 0 and redis.call('SCARD', KEYS[1]) >= limit then
  return 0
end
local guards = tonumber(ARGV[2])
local i = 3
for k = 1, guards do
  local used = tonumber(redis.call('HGET', ARGV[i], ARGV[i + 1]) or '0')
             + tonumber(redis.call('HGET', ARGV[i], ARGV[i + 2]) or '0')
  if used + tonumber(ARGV[i + 3]) > tonumber(ARGV[i + 4]) then
    return -k
  end
  i = i + 5
end
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class GuardRefused(Exception):
    """A spend guard of ``create`` did not fit; ``index`` is its position in the list given."""

    def __init__(self, index: int) -> None:
        super().__init__(f"guard {index} refused")
        self.index = index


class JobStore:
    """Reads and atomically changes job records; the only code that writes them."""

    def __init__(self, client: redis.Redis, ttl_s: int, observers: Iterable[Observer] = ()) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.observers = tuple(observers)
        self._create = client.register_script(_GUARDED_WRITES)

    def create(self, job: Job, problem: dict[str, Any], events: list[Event],
               also: Callable[[Any], None] | None = None, max_active: int | None = None,
               guards: Iterable[Any] = (), canonical: bytes | None = None) -> bool:
        """Store a new job, its problem (also content-addressed: `canonical_problem_key`, for replay) and
        its events atomically, unless its tenant already has
        ``max_active`` unfinished jobs (then nothing is written and the answer is False).

        ``canonical`` is the problem's canonical JSON when the caller has it already (it took the
        fingerprint from it). ``also(pipe)`` adds writes of its own (the orchestrator's first task message). The count and
        the writes run as one Lua script, so concurrent submissions can never take a tenant past its
        quota, and admission is a single round trip.
        """
        job.audit_events = len(events)
        pipe = self.redis.pipeline(transaction=False)  # only records the commands; the script runs them
        pipe.set(job_key(job.job_id), _dumps(job))
        pipe.set(problem_key(job.job_id), _dumps(problem))
        pipe.set(canonical_problem_key(job.provenance.fingerprint),
                 canonical if canonical is not None else canonical_json(problem), ex=self.ttl_s)
        if not job.shadow_of:  # a shadow run is the gateway's experiment: it takes none of the tenant's quota
            pipe.sadd(active_key(job.tenant), job.job_id)
        self._track_lease(pipe, job)
        self._schedule_webhook(pipe, job)
        self._emit(pipe, job, events)
        self._observe(pipe, None, job, events)
        if also is not None:
            also(pipe)
        guards = list(guards)
        argv: list[Any] = [-1 if max_active is None else max_active, len(guards)]
        for guard in guards:  # jobs.spend.Guard: checked before any write (GuardRefused when one does not fit)
            argv += guard.argv()
        for args, _options in pipe.command_stack:
            argv += [len(args), *args]
        written = int(self._create(keys=[active_key(job.tenant)], args=argv))
        if written < 0:
            raise GuardRefused(-written - 1)
        return bool(written)

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(job_key(job_id))
        return _load_job(raw) if raw else None

    def problem(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(problem_key(job_id))
        return json.loads(raw) if raw else None

    def canonical_problem(self, fingerprint: str) -> bytes | None:
        """The canonical JSON stored under ``fingerprint`` (kept ``ttl_s`` after the last job with it
        ended), or None. Its SHA-256 is the fingerprint: the reader checks that, not this store."""
        raw = self.redis.get(canonical_problem_key(fingerprint))
        return raw.encode() if isinstance(raw, str) else raw

    def claim_idempotency(self, tenant: str, key: str, body_hash: str, job_id: str) -> tuple[str, str] | None:
        """Bind ``key`` to this job; if already bound, return the (job id, body hash) it was bound to."""
        name = idempotency_key(tenant, key)
        if self.redis.set(name, f"{job_id} {body_hash}", nx=True, ex=self.ttl_s):
            return None
        existing = self.redis.get(name) or " "
        bound_job, _, bound_hash = existing.partition(" ")
        return bound_job, bound_hash

    def release_idempotency(self, tenant: str, key: str) -> None:
        self.redis.delete(idempotency_key(tenant, key))

    def transition(self, job_id: str, change: Transition, *args: Any, calibration: dict[str, Any] | None = None,
                   **kwargs: Any) -> Job:
        """Apply ``change(job, *args)`` under optimistic locking (redis-py's ``transaction``: WATCH, read,
        MULTI, write, retry on a concurrent change); raises model.Conflict or KeyError.

        A QPU ``calibration`` snapshot is stored and audited in the same transaction, once per distinct
        snapshot fleet-wide: a conclusion refused as stale records nothing.
        """
        key = job_key(job_id)
        watches = [key] + ([calibration_key(calibration["sha256"])] if calibration else [])

        def apply(pipe: Any) -> Job:
            raw = pipe.get(key)
            if raw is None:
                raise KeyError(job_id)
            before = _load_job(raw) if self.observers else None
            job, events = change(_load_job(raw), *args, **kwargs)
            prepared = [observer.prepare(pipe, before, events) for observer in self.observers]
            new_snapshot = bool(calibration) and not pipe.exists(watches[-1])
            pipe.multi()
            if new_snapshot:
                assert calibration is not None
                pipe.set(watches[-1], _dumps(calibration))
                events = [("calibration.recorded", {"snapshot": calibration}), *events]
            self._write(pipe, job, events)
            self._observe(pipe, before, job, events, prepared)
            return job

        return self.redis.transaction(apply, *watches, value_from_callable=True)

    def is_cancelled(self, job_id: str) -> bool:
        """Whether the job has been cancelled (what a running attempt's cancellation watch asks)."""
        raw = self.redis.get(job_key(job_id))
        return raw is not None and _load_job(raw).status == "cancelled"

    def attempt_stopped(self, job_id: str, attempt: int) -> bool:
        """Whether a portfolio attempt should stop: its job ended (won, cancelled) or it no longer races."""
        raw = self.redis.get(job_key(job_id))
        if raw is None:
            return True
        job = _load_job(raw)
        return job.status in TERMINAL or not any(lease.n == attempt for lease in job.racing or [])

    def record(self, job: Job, event_type: str, data: dict[str, Any]) -> None:
        """An audit event about the job that changes nothing in its record."""
        emit(self.redis, event_type, job_id=job.job_id, tenant=job.tenant, **data)

    def forget_lease(self, job_id: str) -> None:
        """Drop a lease whose job is gone (expired or deleted)."""
        self.redis.zrem(LEASES, job_id)

    def _write(self, pipe: Any, job: Job, events: list[Event]) -> None:
        job_id = job.job_id
        job.audit_events = (job.audit_events or 0) + len(events)
        pipe.set(job_key(job_id), _dumps(job))
        self._track_lease(pipe, job)
        if job.status in TERMINAL:
            pipe.srem(active_key(job.tenant), job_id)
            pipe.expire(job_key(job_id), self.ttl_s)
            pipe.expire(problem_key(job_id), self.ttl_s)
            pipe.expire(canonical_problem_key(job.provenance.fingerprint), self.ttl_s)
            pipe.rpush(done_key(job_id), job.status)
            pipe.expire(done_key(job_id), 300)
            self._schedule_webhook(pipe, job)
        self._emit(pipe, job, events)

    def _observe(self, pipe: Any, before: Job | None, job: Job, events: list[Event],
                 prepared: list[Any] | None = None) -> None:
        now = time.time()
        for observer, ready in zip(self.observers, prepared or [None] * len(self.observers)):
            observer.observe(pipe, before, job, events, now, ready)

    @staticmethod
    def _track_lease(pipe: Any, job: Job) -> None:
        """Every attempt in flight, the first included, is in the watchdog's lease set."""
        if job.current:
            pipe.zadd(LEASES, {job.job_id: job.current.lease_until})
        elif job.racing:  # a portfolio job: its first racing lease to run out
            pipe.zadd(LEASES, {job.job_id: min(lease.lease_until for lease in job.racing)})
        else:
            pipe.zrem(LEASES, job.job_id)

    @staticmethod
    def _schedule_webhook(pipe: Any, job: Job) -> None:
        """A job that ended with its webhook due goes into the outbox in the transaction that ends it
        (jobs/outbox.py), so no crash in between can lose the delivery."""
        if job.webhook is not None and job.webhook.state == "pending":
            pipe.zadd(WEBHOOKS_DUE, {job.job_id: int(time.time() * 1000)}, nx=True)

    @staticmethod
    def _emit(pipe: Any, job: Job, events: list[Event]) -> None:
        for event_type, data in events:
            emit(pipe, event_type, job_id=job.job_id, tenant=job.tenant, **data)
        count_events(pipe, events, job)

    def wait_until_finished(self, job_id: str, timeout_s: float, blocking: redis.Redis) -> Job | None:
        """Wait up to ``timeout_s`` for the job to end; return it as it then stands."""
        end = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            left = end - time.monotonic()
            if job is None or job.status in TERMINAL or left <= 0:
                return job
            blocking.blpop([done_key(job_id)], timeout=min(left, 1.0))

    def due_leases(self, now: float, limit: int = 100) -> list[str]:
        return list(self.redis.zrangebyscore(LEASES, "-inf", now, start=0, num=limit))

