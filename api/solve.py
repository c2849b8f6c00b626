"""POST /api/v1/quantum/solve: authenticate, validate, plan, enqueue, answer."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import structlog
from flask import Blueprint, g, jsonify, request
from pydantic import ValidationError

from api.auth import enforce_rate_limit, require
from api.body import BodyError, Busy, heavy_body_slot, parse_json_body
from api.errors import ApiError, unprocessable
from api.schemas import SolveRequest
from api.services import services
from jobs import model
from routing import fallback
from routing.estimates import lane_costs, job_cost_estimate
from routing.plan import plan_lanes
from solvers.problems import fingerprint, parse_problem
from workers.dispatch import enqueue_current

bp = Blueprint("solve", __name__)
BUDGET_HEADER = "X-Latency-Budget-Ms"
BUDGET_PATTERN = re.compile(r"[0-9]{1,10}")


def _read_json() -> dict[str, Any]:
    try:
        body = parse_json_body(request.get_data(cache=True))
    except BodyError as exc:
        errors = [exc.as_error()] if exc.status == 422 else None
        raise ApiError(exc.status, exc.message, errors=errors) from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid request", errors=[{"loc": ["body"], "msg": "must be a JSON object"}])
    return body


def _budget_ms() -> int:
    settings = services().settings
    raw = request.headers.get(BUDGET_HEADER)
    if raw is None:
        return settings.default_budget_ms
    if not BUDGET_PATTERN.fullmatch(raw.strip()) or not 1 <= int(raw) <= settings.max_budget_ms:
        raise ApiError(422, "invalid request", errors=[{"loc": ["header", BUDGET_HEADER],
                       "msg": f"must be an integer from 1 to {settings.max_budget_ms}"}])
    return int(raw)


def _check_lane_scopes(solve: SolveRequest, scopes: frozenset[str]) -> None:
    if solve.solver != "auto" and f"solver:{solve.solver}" not in scopes:
        raise ApiError(403, f"missing scope: solver:{solve.solver}")
    if solve.cost_tier == "premium" and "tier:premium" not in scopes:
        raise ApiError(403, "missing scope: tier:premium")


@bp.post("/api/v1/quantum/solve")
@require("quantum:solve")
def solve() -> Any:
    enforce_rate_limit(g.principal)
    try:
        with heavy_body_slot(request.content_length):
            return _solve()
    except Busy:
        raise ApiError(503, "busy with other large requests; retry shortly", headers={"Retry-After": "2"}) from None


def _solve() -> Any:
    principal = g.principal
    body = _read_json()
    budget_ms = _budget_ms()
    try:
        envelope = SolveRequest.model_validate(body)
    except ValidationError as exc:
        raise unprocessable(exc) from None
    try:
        problem = parse_problem(envelope.problem)
    except ValidationError as exc:
        raise unprocessable(exc, ("problem",)) from None
    _check_lane_scopes(envelope, principal.scopes)
    svc = services()
    store, settings = svc.jobs, svc.settings
    job_id = model.new_job_id()
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key:
        existing = _claim_idempotency(idempotency_key, body, budget_ms, job_id)
        if existing is not None:
            return _answer(existing, budget_ms)
    try:
        return _accept(job_id, problem, envelope, budget_ms)
    except BaseException:
        if idempotency_key:
            store.release_idempotency(principal.tenant, idempotency_key)
        raise


def _claim_idempotency(key: str, body: dict[str, Any], budget_ms: int, job_id: str) -> dict[str, Any] | None:
    if len(key) > 200:
        raise ApiError(422, "invalid request", errors=[{"loc": ["header", "Idempotency-Key"],
                                                         "msg": "at most 200 characters"}])
    tenant = g.principal.tenant
    canonical = json.dumps({"body": body, "budget_ms": budget_ms}, sort_keys=True, separators=(",", ":"))
    body_hash = hashlib.sha256(canonical.encode()).hexdigest()
    bound = services().jobs.claim_idempotency(tenant, key, body_hash, job_id)
    if bound is None:
        return None
    bound_job, bound_hash = bound
    if bound_hash != body_hash:
        raise ApiError(409, "Idempotency-Key was already used with a different request")
    job = services().jobs.get(bound_job) if model.is_job_id(bound_job) else None
    if job is None:
        raise ApiError(409, "Idempotency-Key is being used by a request still in progress; retry")
    if job["tenant"] != tenant:
        raise ApiError(409, "Idempotency-Key was already used with a different request")
    return job


def _accept(job_id: str, problem: Any, envelope: SolveRequest, budget_ms: int) -> Any:
    principal = g.principal
    svc = services()
    store, settings = svc.jobs, svc.settings
    if store.active_count(principal.tenant) >= settings.max_active_jobs_per_tenant:
        raise ApiError(429, f"quota: at most {settings.max_active_jobs_per_tenant} unfinished jobs per tenant",
                       headers={"Retry-After": "5"})
    costs = lane_costs(problem, settings.qpu_price_per_task_usd, settings.qpu_price_per_shot_usd)
    plan = plan_lanes(problem, envelope.solver, principal.scopes, svc.lane_health.statuses(),
                      cost_tier=envelope.cost_tier, lane_cost_usd=costs,
                      standard_tier_max_usd=settings.standard_tier_max_usd)
    _require_runnable(plan)
    request_options = envelope.model_dump(exclude={"problem"})
    problem_data = problem.model_dump(mode="json", exclude_none=True)
    job, events = model.new_job(job_id=job_id, tenant=principal.tenant, client_id=principal.client_id,
                                kind=problem.kind, budget_ms=budget_ms, request=request_options,
                                plan=[step.as_dict() for step in plan], fingerprint=fingerprint(problem),
                                cost_estimate=job_cost_estimate(plan, costs))
    job, dispatched = fallback.start(job, settings.lease_grace_ms)
    store.create(job, problem_data, events + dispatched)
    structlog.contextvars.bind_contextvars(job_id=job_id)
    structlog.get_logger("qgate.api").info("job_accepted", kind=problem.kind, budget_ms=budget_ms,
                                           lanes=[s.lane for s in plan if s.action == "try"])
    enqueue_current(job)
    return _answer(job, budget_ms)


def _require_runnable(plan: list[Any]) -> None:
    if any(step.action == "try" for step in plan):
        return
    reasons = [{"loc": ["plan", step.lane], "msg": step.reason} for step in plan]
    if any(step.reason.startswith("health:") for step in plan):
        raise ApiError(503, "no live worker can take this problem now", errors=reasons,
                       headers={"Retry-After": "5"})
    raise ApiError(422, "no lane can solve this problem", errors=reasons)


def _answer(job: dict[str, Any], budget_ms: int) -> Any:
    svc = services()
    track_url = f"/api/v1/jobs/{job['job_id']}"
    if budget_ms <= svc.settings.sync_threshold_ms:
        left = job["deadline"] - time.time()
        finished = svc.jobs.wait_until_finished(job["job_id"], max(left, 0) + 0.05, svc.blocking_redis) or job
        view = model.public_view(finished)
        if finished["status"] in model.TERMINAL:
            return jsonify(view), 200
        raise ApiError(504, "latency budget ran out before the job finished", body=view,
                       headers={"Location": track_url})
    view = model.public_view(job)
    if job["status"] in model.TERMINAL:
        return jsonify(view), 200
    response = jsonify({"job_id": job["job_id"], "status": job["status"], "track_url": track_url})
    response.status_code = 202
    response.headers["Location"] = track_url
    return response
