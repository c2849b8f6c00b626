"""``GET /api/v1/usage``: jobs, outcomes, QPU shots and estimated USD per day and per group, from the roll-ups.

A caller sees its own tenant. A caller with ``ops:read`` may ask for another tenant (``tenant=<name>``) or
every tenant (``tenant=*``); without ``tenant`` it too sees its own, so an operator's token used by a TMS
never shows other tenants by accident. JSON by default; CSV with ``format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import require
from api.errors import ApiError, bad_query
from api.services import services
from api.tokens import is_tenant
from telemetry.history import USAGE_COLUMNS, usage

bp = Blueprint("usage", __name__)

GROUP_BY = re.compile(r"^(tenant|lane|kind|metadata\.[A-Za-z0-9_.-]{1,64})\Z")
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
TIME = re.compile(TIME_PATTERN.rstrip("$") + r"\Z")
DEFAULT_RANGE_S = 86400


def parse_time(name: str, raw: str | None, default: float) -> float:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as a Unix time."""
    if raw is None:
        return default
    if not TIME.match(raw):
        raise bad_query(name, f"{name}: want an ISO 8601 date or date-time such as 2026-01-31 or 2026-01-31T12:00Z")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_query(name, f"{name}: not a real date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:  # 9999-12-31T23:59-23:59 is year 10000 in UTC: a time no answer can name (iso() would fail: a 500)
        stamp = parsed.astimezone(timezone.utc).timestamp()
    except OverflowError:
        stamp = -1.0
    if stamp < 0:  # before 1970 nothing was recorded, and a day before year 1 cannot be written either
        raise bad_query(name, f"{name}: a time from 1970 to 9999 (UTC)")
    return stamp


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tenant_filter(asked: str | None) -> str | None:
    """The tenant the rows are limited to (None: every tenant); only ops:read reaches beyond its own."""
    principal = g.principal
    if asked is None or asked == principal.tenant:
        return principal.tenant
    if "ops:read" not in principal.scopes:
        raise ApiError(403, "missing scope: ops:read (needed to read other tenants' usage)")
    if asked == "*":
        return None
    if not is_tenant(asked):  # "" included: a parameter given is a parameter checked
        raise bad_query("tenant", "tenant: not a tenant name")
    return asked


def _wants_csv() -> bool:
    fmt = request.args.get("format")
    if fmt not in (None, "json", "csv"):
        raise bad_query("format", "format: json or csv")
    if fmt is not None:
        return fmt == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"], default="application/json")
    return best == "text/csv" and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading quote (OWASP)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def usage_rows(start: float, end: float, group_by: str, tenant: str | None) -> list[dict[str, Any]]:
    return usage(services().redis, start, end, group_by, tenant)


@bp.get("/api/v1/usage")
@require()
def get_usage() -> Any:
    principal = g.principal
    if not {"quantum:solve", "ops:read"} & principal.scopes:
        raise ApiError(403, "missing scope: quantum:solve or ops:read")
    as_csv = _wants_csv()
    group_by = request.args.get("group_by", "tenant")
    if not GROUP_BY.match(group_by):
        raise bad_query("group_by", "group_by: tenant, lane, kind or metadata.<key>")
    now = time.time()
    end = parse_time("to", request.args.get("to"), now)
    start = parse_time("from", request.args.get("from"), end - DEFAULT_RANGE_S)
    longest = services().settings.history_days * 86400 + 86400
    if not start < end or end - start > longest:
        raise bad_query("from", f"from must be before to, at most {longest // 86400} days apart")
    tenant = _tenant_filter(request.args.get("tenant"))
    rows = usage_rows(start, end, group_by, tenant)
    if as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=USAGE_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return Response(out.getvalue(), mimetype="text/csv")
    return jsonify({"from": iso(start), "to": iso(end), "group_by": group_by, "tenant": tenant,
                    "granularity": "day (from hour roll-ups)", "rows": rows})
