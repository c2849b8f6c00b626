"""POST /api/v1/quantum/solve: HTTP in (token, body, headers), one ``JobService.submit``, HTTP out."""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from flask import Blueprint, g, jsonify, request
from pydantic import ValidationError

from api.auth import require
from api.body import BodyError, Busy, heavy_body_slot, parse_json_body
from api.errors import ApiError, unprocessable
from api.refusals import as_api_error
from api.schemas import SolveRequest, conflicts
from api.services import services
from jobs import model
from jobs.model import Job
from orchestrator.service import Refused, Submission
from solvers.problems import parse_problem
from telemetry import tracing
from webhooks.ssrf import ResolveTimeout, UnsafeCallback

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


def _check_shadow_scopes(solve: SolveRequest, scopes: frozenset[str]) -> None:
    """Each shadow lane needs its ``solver:<lane>`` scope, whatever the policy says of the served plan."""
    missing = [i for i, lane in enumerate(solve.shadow or []) if f"solver:{lane}" not in scopes]
    if missing:
        lanes = ", ".join(f"solver:{(solve.shadow or [])[i]}" for i in missing)
        raise ApiError(403, f"missing scope: {lanes} (shadow runs)",
                       errors=[{"loc": ["body", "shadow", i], "msg": f"missing scope solver:{(solve.shadow or [])[i]}"}
                               for i in missing])


@bp.post("/api/v1/quantum/solve")
@require("quantum:solve", rate="solve")
def solve() -> Any:
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
    faults = conflicts(envelope)
    if faults:
        raise ApiError(422, "invalid request", errors=faults)
    _check_shadow_scopes(envelope, principal.scopes)
    submission = Submission(problem, budget_ms, envelope.model_dump(exclude={"problem"}),
                            idempotency_key=_idempotency_key(), body=body, trace_id=tracing.trace_id())
    if services().policy_source is None:
        _check_lane_scopes(envelope, principal.scopes)
    else:
        try:  # the policy's refusals (lane named without its scope, premium without tier:premium): 403
            services().job_service.authorize(principal, submission)
        except Refused as exc:
            raise as_api_error(exc) from None
    if envelope.callback_url is not None:
        _check_callback(envelope.callback_url)
    try:
        with tracing.span("qgate.admit", kind=problem.kind, budget_ms=budget_ms):
            job, replayed = services().job_service.submit(principal, submission)
    except Refused as exc:
        raise as_api_error(exc) from None
    # the request's own log line (api.app) carries the admission: one line per submit, not two
    structlog.contextvars.bind_contextvars(job_id=job.job_id, kind=problem.kind, budget_ms=budget_ms,
                                          lanes=[s.lane for s in job.plan if s.action == "try"],
                                          replayed=replayed)
    return _answer(job, budget_ms)


def _check_callback(url: str) -> None:
    """The SSRF guard at the door: 422 for a URL qgate will not call, 503 when its host does not
    resolve within QGATE_WEBHOOK_DNS_TIMEOUT_S (possibly transient; the ingress thread is not held)."""
    try:
        services().callback_guard.check(url)
    except ResolveTimeout as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from None
    except UnsafeCallback as exc:
        raise ApiError(422, "invalid request", errors=[{"loc": ["body", "callback_url"], "msg": str(exc)}]) from None


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise ApiError(422, "invalid request", errors=[{"loc": ["header", "Idempotency-Key"],
                                                         "msg": "at most 200 characters"}])
    return key


def _answer(job: Job, budget_ms: int) -> Any:
    svc = services()
    track_url = f"/api/v1/jobs/{job.job_id}"
    if budget_ms <= svc.settings.sync_threshold_ms:
        left = job.deadline - time.time()
        finished = svc.jobs.wait_until_finished(job.job_id, max(left, 0) + 0.05, svc.blocking_redis) or job
        view = model.public_view(finished)
        if finished.status in model.TERMINAL:
            return jsonify(view), 200
        raise ApiError(504, "latency budget ran out before the job finished", body=view,
                       headers={"Location": track_url})
    if job.status in model.TERMINAL:
        return jsonify(model.public_view(job)), 200
    response = jsonify({"job_id": job.job_id, "status": job.status, "track_url": track_url})
    response.status_code = 202
    response.headers["Location"] = track_url
    return response
