"""``GET /api/v1/usage``: jobs, outcomes, QPU shots and estimated USD per day and per group, from the roll-ups.

A caller sees its own tenant. A caller with ``ops:read`` may ask for another tenant (``tenant=<name>``) or
every tenant (``tenant=*``); without ``tenant`` it too sees its own, so an operator's token used by a TMS
never shows other tenants by accident. JSON by default; CSV with ``format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, jsonify, request

from api.auth import require
from api.errors import bad_query
from api.reading import csv_response, iso, parse_time, require_reader, tenant_filter, wants_csv
from api.services import services
from telemetry.history import USAGE_COLUMNS, usage

bp = Blueprint("usage", __name__)

GROUP_BY = re.compile(r"^(tenant|lane|kind|metadata\.[A-Za-z0-9_.-]{1,64})\Z")
DEFAULT_RANGE_S = 86400


@bp.get("/api/v1/usage")
@require()
def get_usage() -> Any:
    require_reader()
    as_csv = wants_csv()
    group_by = request.args.get("group_by", "tenant")
    if not GROUP_BY.match(group_by):
        raise bad_query("group_by", "group_by: tenant, lane, kind or metadata.<key>")
    now = time.time()
    end = parse_time("to", request.args.get("to"), now)
    start = parse_time("from", request.args.get("from"), end - DEFAULT_RANGE_S)
    longest = services().settings.history_days * 86400 + 86400
    if not start < end or end - start > longest:
        raise bad_query("from", f"from must be before to, at most {longest // 86400} days apart")
    tenant = tenant_filter(request.args.get("tenant"))
    rows = usage(services().redis, start, end, group_by, tenant)
    if as_csv:
        return csv_response(USAGE_COLUMNS, rows)
    return jsonify({"from": iso(start), "to": iso(end), "group_by": group_by, "tenant": tenant,
                    "granularity": "day (from hour roll-ups)", "rows": rows})
