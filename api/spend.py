"""``GET /api/v1/usage/limits``: each QPU spend allowance with what is reserved, spent and left.

A caller sees its own tenant; ``ops:read`` may ask for another (``tenant=<name>``) or all (``tenant=*``),
as ``GET /api/v1/usage`` does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from api.auth import require
from api.errors import ApiError
from api.services import services
from api.usage import _tenant_filter

bp = Blueprint("spend", __name__)


@bp.get("/api/v1/usage/limits")
@require()
def get_limits() -> Any:
    if not {"quantum:solve", "ops:read"} & g.principal.scopes:
        raise ApiError(403, "missing scope: quantum:solve or ops:read")
    tenant = _tenant_filter(request.args.get("tenant"))
    return jsonify({"tenant": tenant, "windows": "UTC day and month", "limits": services().spend.report(tenant)})
