"""The job resource: read by its own tenant only, cancelled with DELETE."""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, g, jsonify

from api.auth import require
from api.errors import ApiError
from api.services import services
from jobs import model
from workers.dispatch import revoke_attempt

bp = Blueprint("jobs", __name__)


def own_job(job_id: str) -> dict[str, Any]:
    """The job if it belongs to the caller's tenant; 404 alike for missing and foreign jobs."""
    job = services().jobs.get(job_id) if model.is_job_id(job_id) else None
    if job is None or job["tenant"] != g.principal.tenant:
        raise ApiError(404, "job not found")
    structlog.contextvars.bind_contextvars(job_id=job_id)
    return job


@bp.get("/api/v1/jobs/<job_id>")
@require("quantum:solve")
def get_job(job_id: str) -> Any:
    return jsonify(model.public_view(own_job(job_id)))


@bp.delete("/api/v1/jobs/<job_id>")
@require("quantum:solve")
def cancel_job(job_id: str) -> Any:
    job = own_job(job_id)
    current = job.get("current")
    try:
        job = services().jobs.transition(job_id, model.cancel)
    except model.Conflict:
        raise ApiError(409, f"job already {services().jobs.get(job_id)['status']}") from None
    if current:
        revoke_attempt(current["task_id"])
    return jsonify(model.public_view(job))
