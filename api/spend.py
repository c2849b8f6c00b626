"""``GET /api/v1/usage/limits``: each QPU spend allowance with what is reserved, spent and left.

A caller sees its own tenant; ``ops:read`` may ask for another (``tenant=<name>``) or all (``tenant=*``),
as ``GET /api/v1/usage`` does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from api.auth import require
from api.reading import require_reader, tenant_filter
from api.services import services

bp = Blueprint("spend", __name__)


@bp.get("/api/v1/usage/limits")
@require()
def get_limits() -> Any:
    require_reader()
    tenant = tenant_filter(request.args.get("tenant"))
    return jsonify({"tenant": tenant, "windows": "UTC day and month", "limits": services().spend.report(tenant)})
