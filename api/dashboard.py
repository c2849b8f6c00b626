"""The operations console (``/dashboard``, scope ``ops:read``): server-rendered pages over the roll-ups,
the job records and the audit log's files. No build step: Jinja templates plus vendored htmx and uPlot.

It reads only what it can name: roll-up buckets by computed key, the bounded recent-jobs lists kept in
the job transactions, job records by id, the audit stream's length and its group's pending count, and the
audit directory. Sign-in and the session are in ``api.console_session``.
"""

from __future__ import annotations

import json
import time
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from api import console_session, rate_limits
from api.audit_state import audit_state, job_audit_entries
from api.errors import ApiError, bad_query
from api.services import services
from jobs import model
from jobs.store import job_key
from audit.verify import verify_file
from routing.breaker import Breaker, breaker_key
from routing.health import lane_statuses, live_workers
from routing.predict import Outlook, PredictConfig, outlook
from routing.telemetry import LaneTelemetry, Stats
from solvers.registry import LANES, lane_queues
from telemetry import history, rollups

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard/static")

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
SEARCH_LIMIT = 50
SEARCH_CHUNK = 200
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@bp.record_once
def _configure(state: Any) -> None:
    console_session.configure(state.app, state.app.extensions["qgate"].settings.console_key_path)
    state.app.jinja_env.globals.update(console_session.template_globals())


@bp.after_request
def _page_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def operator_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """A page for signed-in operators: others are sent to the sign-in page; each page spends a read
    request of the operator's client and tenant, as an API call does."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = console_session.current_principal()
        if principal is None:
            return redirect(url_for("dashboard.login"), 303)
        rate_limits.enforce("read", principal)
        g.principal = principal
        return view(*args, **kwargs)
    return wrapper


# -- sign-in -------------------------------------------------------------------------------------------

@bp.get("/dashboard/login")
def login() -> Any:
    return render_template("dashboard/login.html", error=None)


@bp.post("/dashboard/login")
def login_submit() -> Any:
    console_session.check_csrf()
    try:
        console_session.sign_in(request.form.get("client_id", ""), request.form.get("client_secret", ""))
    except console_session.SignInRefused as refused:
        return render_template("dashboard/login.html", error=str(refused)), refused.status
    return redirect(url_for("dashboard.overview"), 303)


@bp.post("/dashboard/logout")
def logout() -> Any:
    console_session.check_csrf()
    console_session.sign_out()
    return redirect(url_for("dashboard.login"), 303)


# -- overview ------------------------------------------------------------------------------------------

def _window() -> str:
    window = request.args.get("window", "hour")
    return window if window in history.WINDOWS else "hour"


def _series(client: Any, window: str, now: float) -> dict[str, Any]:
    """Finished jobs per bucket and lane, and fallbacks per bucket, for the chart."""
    keys = history.bucket_keys(now - history.WINDOWS[window], now, now)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    step = 60 if ":m:" in keys[0] else 3600
    times, lanes, fallbacks = [], {lane: [] for lane in LANES}, []
    for key, fields in zip(keys, pipe.execute()):
        times.append(int(key.rsplit(":", 1)[1]) * step)
        counts = {lane: 0 for lane in LANES}
        falls = 0
        for name, value in fields.items():
            parts = name.split(rollups.SEP)
            if parts[0] == "job" and parts[1] in counts:
                counts[parts[1]] += int(value)
            elif parts[0] == "fb":
                falls += int(value)
        for lane in LANES:
            lanes[lane].append(counts[lane])
        fallbacks.append(falls)
    return {"t": times, "lanes": lanes, "fallbacks": fallbacks}


@bp.get("/dashboard")
@operator_page
def overview() -> Any:
    client, now, window = services().redis, time.time(), _window()
    summary = history.window_summary(client, window, LANES, now)
    statuses = lane_statuses(client, now)
    live = live_workers(client, now)
    depth = {lane: sum(client.llen(queue) for queue in lane_queues(lane)) for lane in LANES}
    chart = json.dumps(_series(client, window, now))
    breakers, outlooks = lane_outlooks(client, depth, {lane: len(live.get(lane, [])) for lane in LANES}, now)
    return render_template("dashboard/overview.html", page="overview", window=window, windows=history.WINDOWS,
                           summary=summary, statuses=statuses, live=live, depth=depth, chart=chart, lanes=LANES,
                           breakers=breakers, outlooks=outlooks, now=now)


def lane_outlooks(client: Any, depth: dict[str, int], workers: dict[str, int],
                  now: float) -> tuple[dict[str, Breaker], dict[str, Outlook]]:
    """Each lane's breaker and its predicted queue wait over all problem classes, read-only: unlike the
    planner's ``LaneSignals.outlooks`` this never claims a half-open probe or a telemetry refresh."""
    config = PredictConfig.of(services().settings)
    pipe = client.pipeline(transaction=False)
    for lane in LANES:
        pipe.get(breaker_key(lane))
        LaneTelemetry.read(pipe, lane, None)
    replies = pipe.execute()
    breakers, looks = {}, {}
    for i, lane in enumerate(LANES):
        breaker_raw, _, lane_raw = replies[i * 3:(i + 1) * 3]
        breakers[lane] = Breaker.loads(breaker_raw)
        stats = Stats.of(lane_raw)
        looks[lane] = outlook(lane, stats, stats, depth.get(lane, 0), workers.get(lane, 0), now, config)
    return breakers, looks


# -- jobs ----------------------------------------------------------------------------------------------

def _matches(job: model.Job, wanted: dict[str, str]) -> bool:
    lanes = {a.lane for a in job.attempts} | ({job.current.lane} if job.current else set())
    return ((not wanted["tenant"] or job.tenant == wanted["tenant"])
            and (not wanted["status"] or job.status == wanted["status"])
            and (not wanted["kind"] or job.kind == wanted["kind"])
            and (not wanted["lane"] or wanted["lane"] in lanes))


def search_recent(wanted: dict[str, str]) -> tuple[list[model.Job], int]:
    """Recent jobs matching ``wanted``: walks the bounded recent list (the tenant's when one is named) in
    chunks, newest first, reading records by id; returns the matches and how many ids were looked at."""
    client = services().redis
    source = rollups.recent_key(wanted["tenant"] or None)
    found: list[model.Job] = []
    seen = 0
    while len(found) < SEARCH_LIMIT:
        ids = client.lrange(source, seen, seen + SEARCH_CHUNK - 1)
        if not ids:
            break
        seen += len(ids)
        for raw in client.mget([job_key(job_id) for job_id in ids]):
            if raw:
                job = model.Job.model_validate_json(raw)
                if _matches(job, wanted) and len(found) < SEARCH_LIMIT:
                    found.append(job)
    return found, seen


@bp.get("/dashboard/jobs")
@operator_page
def jobs() -> Any:
    wanted = {name: (request.args.get(name) or "").strip()[:64] for name in ("id", "tenant", "status", "lane", "kind")}
    if wanted["id"]:
        if model.is_job_id(wanted["id"]) and services().jobs.get(wanted["id"]) is not None:
            return redirect(url_for("dashboard.job", job_id=wanted["id"]), 303)
        return render_template("dashboard/jobs.html", page="jobs", wanted=wanted, found=[], seen=0,
                               statuses=STATUSES, lanes=LANES, error="no job with that id"), 404
    found, seen = search_recent(wanted)
    return render_template("dashboard/jobs.html", page="jobs", wanted=wanted, found=found, seen=seen,
                           statuses=STATUSES, lanes=LANES, error=None)


def _result_summary(job: model.Job) -> list[tuple[str, str]]:
    result = job.result or {}
    out = []
    for name in ("cost", "energy", "feasible", "optimal"):
        if name in result:
            out.append((name, str(result[name])))
    if "tour" in result:
        out.append(("tour", f"{len(result['tour'])} nodes"))
    if "routes" in result:
        out.append(("routes", f"{len(result['routes'])} routes"))
    if isinstance(result.get("counts"), dict):
        counts = result["counts"]
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        out.append(("shots", str(sum(counts.values()))))
        out.append(("top outcomes", ", ".join(f"{k}: {v}" for k, v in top)))
    return out


@bp.get("/dashboard/jobs/<job_id>")
@operator_page
def job(job_id: str) -> Any:
    found = services().jobs.get(job_id) if model.is_job_id(job_id) else None
    if found is None:
        raise ApiError(404, "no such job")
    details = json.dumps(found.provenance.model_dump(), indent=2, sort_keys=True, default=str)
    return render_template("dashboard/job.html", page="jobs", job=found, result_summary=_result_summary(found),
                           provenance=details[:20000], entries=job_audit_entries(job_id),
                           now=time.time())


# -- tenants and cost ----------------------------------------------------------------------------------

@bp.get("/dashboard/tenants")
@operator_page
def tenants() -> Any:
    days = request.args.get("days", "7")
    days_n = int(days) if days.isdigit() and 1 <= int(days) <= services().settings.history_days else 7
    meta = (request.args.get("meta") or "").strip()
    now = time.time()
    start = now - days_n * 86400
    client = services().redis
    by_tenant = history.usage(client, start, now, "tenant")
    totals = history.per_tenant_cost(client, start, now)
    by_meta = None
    if meta:
        if not all(c.isalnum() or c in "_.-" for c in meta) or len(meta) > 64:
            raise bad_query("meta", "metadata key: letters, digits, _ . - (at most 64)")
        by_meta = history.usage(client, start, now, f"metadata.{meta}")
    return render_template("dashboard/tenants.html", page="tenants", days=days_n, meta=meta, rows=by_tenant,
                           totals=totals, by_meta=by_meta)


# -- audit ---------------------------------------------------------------------------------------------

@bp.get("/dashboard/audit")
@operator_page
def audit() -> Any:
    return render_template("dashboard/audit.html", page="audit", state=audit_state(), now=time.time(),
                           last_verify=_last_verification(), can_verify=VERIFY_SCOPE in g.principal.scopes)


VERIFY_SCOPE = "audit:read"  # as GET /api/v1/audit/verify (api/audit.py)
LAST_VERIFY = "qgate:console:audit:last_verification"


def _last_verification() -> dict[str, Any] | None:
    raw = services().redis.get(LAST_VERIFY)
    return json.loads(raw) if raw else None


@bp.post("/dashboard/audit/verify")
def audit_verify() -> Any:
    """Verify the whole log now (the chain, every checkpoint's root and signature), keep the result for the
    page (and other operators), and show it. CSRF-checked first (a POST without the session's token is a
    403, as sign-out is); needs audit:read, as the API's verify does."""
    console_session.check_csrf()
    return _run_verification()


@operator_page
def _run_verification() -> Any:
    if VERIFY_SCOPE not in g.principal.scopes:
        raise ApiError(403, f"verifying the audit log needs the {VERIFY_SCOPE} scope")
    started = time.time()
    result = verify_file(services().settings.audit_path).as_dict()
    record = {**result, "at": model.iso(started), "seconds": round(time.time() - started, 3),
              "by": g.principal.client_id}
    services().redis.set(LAST_VERIFY, json.dumps(record))
    return redirect(url_for("dashboard.audit"), 303)
