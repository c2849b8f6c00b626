"""What the read-only report routes share (``/api/v1/usage``, ``/api/v1/usage/limits``,
``/api/v1/reports/lanes``): who may read, whose tenant, the time parameters, and JSON or CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from flask import Response, g, request

from api.errors import ApiError, bad_query
from api.tokens import is_tenant

TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
TIME = re.compile(TIME_PATTERN.rstrip("$") + r"\Z")


def require_reader() -> None:
    """A report is read with ``quantum:solve`` (one's own tenant) or ``ops:read``."""
    if not {"quantum:solve", "ops:read"} & g.principal.scopes:
        raise ApiError(403, "missing scope: quantum:solve or ops:read")


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


def tenant_filter(asked: str | None) -> str | None:
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


def wants_csv() -> bool:
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


def csv_response(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Response:
    """Rows as CSV (RFC 4180 line ends), every text cell made safe for a spreadsheet."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return Response(out.getvalue(), mimetype="text/csv")
