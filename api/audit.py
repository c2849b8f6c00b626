"""Audit read endpoints: verify the whole chain, list one job's entries."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify

from api.auth import require
from api.errors import ApiError
from api.services import services
from audit.reader import job_entries
from audit.verify import verify_file

bp = Blueprint("audit", __name__)


@bp.get("/api/v1/audit/verify")
@require("audit:read")
def verify() -> Any:
    return jsonify(verify_file(services().settings.audit_path).as_dict())


@bp.get("/api/v1/audit/jobs/<job_id>")
@require("audit:read")
def entries_of_job(job_id: str) -> Any:
    entries = [e for e in job_entries(services().settings.audit_path, job_id)]
    if not entries or any(e.get("tenant") != g.principal.tenant for e in entries):
        raise ApiError(404, "no audit entries for this job")
    return jsonify({"job_id": job_id, "entries": entries})
