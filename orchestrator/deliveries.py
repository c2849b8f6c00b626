"""The orchestration core's webhook half: when a delivery is due, what it sends, and what its outcome
means (delivered, retry when, failed). Kept beside ``service.py`` (the job lifecycle) rather than inside it.

The edges are thin adapters onto one call each: the webhook worker's sweeper loop calls
``enqueue_due``, its Celery task ``deliver``, and the Flask view ``POST /api/v1/jobs/<id>/redeliver``
calls ``redeliver``. The service takes its collaborators explicitly (the job store and its outbox, the
SSRF guard, an HTTP sender, the secret vault, a queue) and imports no Flask, Celery or settings.

A delivery never changes a job's outcome: it only appends to the job's delivery log and moves its
outbox entry; and it runs on its own queue and worker, never on a lane worker or the ingress.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobs import model
from jobs.outbox import Outbox
from jobs.store import JobStore
from orchestrator.service import JobNotFound, Refused
from webhooks.retry import RetryPolicy, verdict
from webhooks.sender import Reply
from webhooks.signing import signature_headers
from webhooks.ssrf import Target, UnsafeCallback


class NotRedeliverable(Refused):
    """The job has not finished, or has no callback URL."""


class DeliveryQueue(Protocol):
    """Hands a claimed delivery to a webhook worker (Celery's implementation lives in workers/)."""

    def enqueue(self, job_id: str, token: int) -> None: ...


class CallbackGuard(Protocol):
    def check(self, url: str) -> Target: ...


class HttpSender(Protocol):
    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Reply: ...


class SecretSource(Protocol):
    def live(self, client_id: str) -> list[str]: ...


@dataclass
class DeliveryService:
    """The ingress builds it with the store alone (``redeliver`` needs nothing else); the webhook worker
    with every collaborator."""

    store: JobStore
    queue: DeliveryQueue | None = None
    guard: CallbackGuard | None = None
    sender: HttpSender | None = None
    secrets: SecretSource | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    claim_s: float = 30.0
    log: Any = None

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.store)

    # -- the sweeper ----------------------------------------------------------------------------------

    def enqueue_due(self, now: float | None = None) -> int:
        """Claim the deliveries that are due and queue them; returns how many. One that cannot be queued
        is due again when its claim runs out."""
        assert self.queue is not None, "a sweeper needs a queue"
        claimed = self.outbox.claim_due(time.time() if now is None else now, self.claim_s)
        for job_id, token in claimed:
            try:
                self.queue.enqueue(job_id, token)
            except Exception as exc:  # the broker is away: the claim runs out and the entry is due again
                self._log("warning", "webhook_enqueue_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        return len(claimed)

    # -- one delivery ---------------------------------------------------------------------------------

    def deliver(self, job_id: str, token: int) -> str:
        """Make one attempt of a claimed delivery and record it; returns the outcome or why none was made."""
        outbox = self.outbox
        if not outbox.holds(job_id, token):
            return "stale"
        job = self.store.get(job_id)
        if job is None or job.webhook is None or job.webhook.state != "pending":
            outbox.drop(job_id)
            return "gone"
        reply, refused = self._attempt(job)
        outcome = verdict(reply.status, refused)
        now = time.time()
        next_due = None
        if outcome == "retry":
            next_due = self.retry.next_attempt_at(job.webhook.tries + 1, job.webhook.window_start or now, now,
                                                  reply.retry_after_s)
            if next_due is None:
                outcome = "failed"
                reply = Reply(reply.status, reply.duration_ms,
                              f"{reply.error}; retry window of {self.retry.window_s / 3600:g} h exhausted")
        record = model.Delivery(attempt=len(job.deliveries or []) + 1, at=model.iso(now), status=reply.status,
                                duration_ms=reply.duration_ms, error=reply.error)
        try:
            outbox.record(job_id, token, model.record_delivery, record, outcome, next_due, next_due=next_due)
        except (model.Conflict, KeyError) as exc:
            self._log("warning", "webhook_outcome_discarded", job_id=job_id, outcome=outcome, reason=str(exc))
            return "stale"
        self._log("info", "webhook_attempted", job_id=job_id, status=reply.status, outcome=outcome,
                  error=reply.error)
        return outcome

    def _attempt(self, job: model.Job) -> tuple[Reply, bool]:
        """POST the job resource; (the reply, whether the guard or a missing secret refused it)."""
        assert job.webhook is not None
        assert self.secrets and self.guard and self.sender, "a deliverer needs secrets, a guard and a sender"
        secrets = self.secrets.live(job.client_id)
        if not secrets:
            return Reply(None, 0.0, "the client has no webhook secret (qgate clients rotate-webhook-secret)"), True
        try:
            target = self.guard.check(str(job.request.get("callback_url")))
        except UnsafeCallback as exc:
            return Reply(None, 0.0, f"refused: {exc}"[:300]), True
        body = json.dumps(model.public_view(job), separators=(",", ":"), allow_nan=False).encode()
        headers = signature_headers(body, job.webhook.id, int(time.time()), secrets)
        return self.sender.post(target, body, headers), False

    # -- on request -----------------------------------------------------------------------------------

    def redeliver(self, tenant: str, job_id: str) -> model.Job:
        """Send a finished job's webhook again (a fresh retry window); 404 alike for foreign jobs."""
        job = self.store.get(job_id) if model.is_job_id(job_id) else None
        if job is None or job.tenant != tenant:
            raise JobNotFound("job not found")
        try:
            return self.outbox.schedule_now(job_id, model.redeliver)
        except model.Conflict as exc:
            raise NotRedeliverable(str(exc)) from None
        except KeyError:
            raise JobNotFound("job not found") from None

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, **fields)
