"""The job resource: read by its own tenant only, cancelled with DELETE, its webhook sent again with
POST .../redeliver."""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, g, jsonify

from api.auth import require
from api.refusals import as_api_error
from api.services import services
from jobs import model
from jobs.model import Job
from orchestrator.service import Refused

bp = Blueprint("jobs", __name__)


def own_job(job_id: str) -> Job:
    """The job if it belongs to the caller's tenant; 404 alike for missing and foreign jobs."""
    try:
        job = services().job_service.job_of(g.principal.tenant, job_id)
    except Refused as exc:
        raise as_api_error(exc) from None
    structlog.contextvars.bind_contextvars(job_id=job_id)
    return job


@bp.get("/api/v1/jobs/<job_id>")
@require("quantum:solve")
def get_job(job_id: str) -> Any:
    job = own_job(job_id)
    return jsonify(model.public_view(job, services().job_service.queue_of(job)))


@bp.delete("/api/v1/jobs/<job_id>")
@require("quantum:solve")
def cancel_job(job_id: str) -> Any:
    try:
        job = services().job_service.cancel(g.principal.tenant, job_id)
    except Refused as exc:
        raise as_api_error(exc) from None
    return jsonify(model.public_view(job))


@bp.post("/api/v1/jobs/<job_id>/redeliver")
@require("quantum:solve")
def redeliver_job(job_id: str) -> Any:
    try:
        job = services().deliveries.redeliver(g.principal.tenant, job_id)
    except Refused as exc:
        raise as_api_error(exc) from None
    return jsonify(model.public_view(job)), 202
