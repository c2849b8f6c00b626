"""``GET /api/v1/reports/lanes``: each lane's runs against the answers served, per lane x kind: shadow runs
and the finished attempts that lost a portfolio race (``shadow_runs``, ``portfolio_runs``; ``source=``
keeps one of the two).

The evidence for or against a lane (a quantum one above all): how often it answered, how often feasibly,
how often better, equal or worse than what was served, by how much (relative gap, negative = better), how
fast and at what estimated cost. Rows come from the bounded per-day records that the shadow observer
(``orchestrator.shadow``) and the portfolio observer (``orchestrator.evidence``) write when a comparison
is known; nothing scans the keyspace. Tenants as in
``/api/v1/usage``: one's own, ``ops:read`` for another (``tenant=<name>``) or all (``tenant=*``). JSON, or
CSV with ``format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request

from api.auth import require
from api.errors import bad_query
from api.reading import csv_response, iso, parse_time, require_reader, tenant_filter, wants_csv
from api.services import services
from orchestrator.shadow import REPORT_COLUMNS, SOURCES, report
from solvers.problems import KINDS

bp = Blueprint("reports", __name__)
DEFAULT_RANGE_S = 7 * 86400


@bp.get("/api/v1/reports/lanes")
@require()
def lanes_report() -> Any:
    require_reader()
    as_csv = wants_csv()
    kind = request.args.get("kind")
    if kind is not None and kind not in KINDS:
        raise bad_query("kind", f"kind: one of {', '.join(KINDS)}")
    now = time.time()
    days = services().settings.history_days
    since = parse_time("since", request.args.get("since"), now - DEFAULT_RANGE_S)
    if since > now or now - since > (days + 1) * 86400:
        raise bad_query("since", f"since: a past time within the last {days} days")
    source = request.args.get("source")
    if source is not None and source not in SOURCES:
        raise bad_query("source", f"source: one of {', '.join(SOURCES)}")
    tenant = tenant_filter(request.args.get("tenant"))
    rows = report(services().redis, since, tenant, kind, now, max_days=days + 1, source=source)
    if as_csv:
        return csv_response(REPORT_COLUMNS, rows)
    return jsonify({"since": iso(since), "to": iso(now), "tenant": tenant, "kind": kind, "source": source,
                    "gap": "relative to the served answer's objective, (run - served) / |served|; negative "
                           "is better (objectives are minimised)", "rows": rows})
