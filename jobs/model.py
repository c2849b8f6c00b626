"""The job record and its state machine, as plain functions over dicts.

Each transition checks that it applies (raising ``Conflict`` otherwise: a stale worker, a duplicate
delivery, a job already finished) and returns the audit events it causes. The store applies a transition
and its events atomically, so the log and the job never disagree.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ATTEMPT_OUTCOMES = frozenset({"succeeded", "failed", "timeout", "skipped", "cancelled"})
Event = tuple[str, dict[str, Any]]


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


def new_job(*, job_id: str, tenant: str, client_id: str, kind: str, budget_ms: int, request: dict[str, Any],
            plan: list[dict[str, Any]], fingerprint: str, cost_estimate: dict[str, Any],
            now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    """A queued job; ``request`` holds the solve options (solver, strategy, cost_tier, seed, ...)."""
    now = time.time() if now is None else now
    job = {
        "job_id": job_id, "tenant": tenant, "client_id": client_id, "status": "queued", "kind": kind,
        "created_at": iso(now), "finished_at": None, "latency_budget_ms": budget_ms,
        "deadline": now + budget_ms / 1000, "request": request, "plan": plan, "attempts": [],
        "current": None, "result": None, "solver": None, "error": None,
        "provenance": {"fingerprint": fingerprint, "seed": request.get("seed"), "calibration": None},
        "cost_estimate": cost_estimate,
    }
    event = ("job.accepted", {"kind": kind, "budget_ms": budget_ms, "fingerprint": fingerprint,
                              "plan": plan, "request": request, "client_id": client_id})
    return job, [event]


def _require_active(job: dict[str, Any]) -> None:
    if job["status"] in TERMINAL:
        raise Conflict(f"job is already {job['status']}")


def _require_current(job: dict[str, Any], attempt: int) -> dict[str, Any]:
    _require_active(job)
    current = job.get("current")
    if not current or current["n"] != attempt:
        raise Conflict(f"attempt {attempt} is not the job's current attempt")
    return current


def dispatch(job: dict[str, Any], lane: str, limit_ms: int, lease_grace_ms: int,
             now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    """Hand the job to ``lane`` for at most ``limit_ms``; a fallback when an earlier attempt ended."""
    _require_active(job)
    if job.get("current"):
        raise Conflict("the job already has an attempt in flight")
    now = time.time() if now is None else now
    n = len(job["attempts"]) + 1
    job["current"] = {"n": n, "lane": lane, "task_id": f"{job['job_id']}.{n}", "enqueued_at": now,
                      "started_at": None, "limit_ms": limit_ms, "deadline": now + limit_ms / 1000,
                      "lease_until": now + (limit_ms + lease_grace_ms) / 1000}
    events: list[Event] = []
    job["dispatches"] = job.get("dispatches", 0) + 1
    if job["dispatches"] > 1:
        last = job["attempts"][-1]
        events.append(("job.fallback", {"from": last["lane"], "to": lane, "reason": last["reason"],
                                        "limit_ms": limit_ms}))
    else:
        events.append(("attempt.enqueued", {"lane": lane, "attempt": n, "limit_ms": limit_ms}))
    return job, events


def start_attempt(job: dict[str, Any], attempt: int, worker: str,
                  now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    current = _require_current(job, attempt)
    if current["started_at"] is not None:
        raise Conflict(f"attempt {attempt} was already started")
    current["started_at"] = time.time() if now is None else now
    current["worker"] = worker
    job["status"] = "running"
    return job, [("attempt.started", {"lane": current["lane"], "attempt": attempt, "worker": worker})]


def finish_attempt(job: dict[str, Any], attempt: int, outcome: str, reason: str, *, solver: str | None = None,
                   now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    """Close the current attempt with ``outcome``; the job itself stays active for a fallback or an end."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    current = _require_current(job, attempt)
    now = time.time() if now is None else now
    since = current["started_at"] or current["enqueued_at"]
    record = {"n": attempt, "lane": current["lane"], "solver": solver, "outcome": outcome, "reason": reason,
              "duration_ms": round((now - since) * 1000, 1),
              "queued_ms": round(((current["started_at"] or now) - current["enqueued_at"]) * 1000, 1)}
    job["attempts"].append(record)
    job["current"] = None
    return job, [(f"attempt.{outcome}", {k: v for k, v in record.items() if k != "n"} | {"attempt": attempt})]


def skip_lane(job: dict[str, Any], lane: str, reason: str) -> tuple[dict[str, Any], list[Event]]:
    """Record a planned lane passed over without an attempt (e.g. too little budget left for it)."""
    _require_active(job)
    record = {"n": len(job["attempts"]) + 1, "lane": lane, "solver": None, "outcome": "skipped",
              "reason": reason, "duration_ms": 0.0, "queued_ms": 0.0}
    job["attempts"].append(record)
    return job, [("attempt.skipped", {"lane": lane, "outcome": "skipped", "reason": reason})]


def succeed(job: dict[str, Any], result: dict[str, Any], solver: dict[str, Any], provenance: dict[str, Any],
            now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    job.update(status="succeeded", finished_at=iso(now), result=result, solver=solver)
    job["provenance"].update(provenance)
    return job, [("job.succeeded", {"solver": solver, "provenance": job["provenance"], "result": result})]


def fail(job: dict[str, Any], reason: str, now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    job.update(status="failed", finished_at=iso(now), error=reason, current=None)
    return job, [("job.failed", {"reason": reason})]


def cancel(job: dict[str, Any], now: float | None = None) -> tuple[dict[str, Any], list[Event]]:
    _require_active(job)
    now = time.time() if now is None else now
    events: list[Event] = []
    if job.get("current"):
        job, events = finish_attempt(job, job["current"]["n"], "cancelled", "cancelled by the client", now=now)
    job.update(status="cancelled", finished_at=iso(now), error="cancelled by the client")
    return job, events + [("job.cancelled", {})]


PRIVATE_FIELDS = ("deadline", "current", "request", "client_id", "tenant", "audit_events", "dispatches")


def public_view(job: dict[str, Any]) -> dict[str, Any]:
    """The job resource as the contract shows it to its tenant."""
    view = {k: v for k, v in job.items() if k not in PRIVATE_FIELDS}
    request = job.get("request", {})
    view["request"] = {k: request.get(k) for k in ("solver", "strategy", "cost_tier", "metadata")}
    view["attempts"] = [{k: v for k, v in a.items() if k != "n"} for a in job["attempts"]]
    current = job.get("current")
    view["current_lane"] = current["lane"] if current else None
    view["audit"] = {"receipt_url": f"/api/v1/audit/jobs/{job['job_id']}/receipt"}
    return view
