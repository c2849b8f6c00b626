"""Shadow runs: lanes that solve a job's problem beside its plan, compared with the answer served; and the
lane report over those comparisons and the portfolio races' (``orchestrator.evidence``).

A shadow run is a job of its own (``shadow_of`` names the served job): one lane, the served job's budget,
the batch priority, no webhook, outside the tenant's quota. It shares nothing with the served job but the
problem, so it cannot change its answer, its outcome or its latency, and when it outlives the served job
it runs on to its own limit on its own queue slot, with leases, the watchdog and cancellation as usual.

The comparison is written by a ``JobStore`` observer in the transaction that ends the second of the pair:
the shadow job's end WATCHes the served job, the served job's end WATCHes the shadow results waiting for
it, so whichever ends last sees the other (a concurrent pair retries) and each comparison is recorded
exactly once. It is audited (``shadow.compared`` with both objectives and the gap) and appended to a
bounded per-day list for the lane report: the report reads those lists through a per-day index and never
scans the keyspace.
"""

from __future__ import annotations

import hashlib
import math
import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from audit.channel import emit
from jobs.model import TERMINAL, Job
from orchestrator.portfolio import compare, feasible, objective_of, relative_gap

DEFAULTS_KEY = "qgate:shadow:defaults"  # tenant -> "qpu,sim": an operator's default shadow lanes
MAX_RECORDS_PER_DAY = 10_000  # per tenant x lane x kind and day: the report's sample is bounded
ENDING = ("job.succeeded", "job.failed", "job.cancelled")
SOURCES = ("shadow", "portfolio")  # where a report row's evidence comes from
REPORT_COLUMNS = ["lane", "kind", "runs", "feasible_share", "better_share", "equal_share", "worse_share",
                  "compared", "mean_gap", "p90_gap", "p50_time_ms", "p90_time_ms", "estimated_cost_usd",
                  "shadow_runs", "portfolio_runs"]


def pending_key(job_id: str) -> str:
    return f"qgate:shadow:pending:{job_id}"


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%d")


def index_key(day: str) -> str:
    return f"qgate:lanes:report:{day}"


def records_key(day: str, tenant: str, lane: str, kind: str) -> str:
    digest = hashlib.sha256(json.dumps([tenant, lane, kind]).encode()).hexdigest()[:32]
    return f"qgate:lanes:report:{day}:{digest}"


# -- operators' defaults -------------------------------------------------------------------------------

def set_defaults(redis: Any, tenant: str, lanes: list[str]) -> None:
    if lanes:
        redis.hset(DEFAULTS_KEY, tenant, ",".join(lanes))
    else:
        redis.hdel(DEFAULTS_KEY, tenant)


def defaults(redis: Any, tenant: str) -> list[str]:
    raw = redis.hget(DEFAULTS_KEY, tenant)
    return [lane for lane in (raw or "").split(",") if lane]


def all_defaults(redis: Any) -> dict[str, list[str]]:
    return {tenant: [lane for lane in raw.split(",") if lane] for tenant, raw in redis.hgetall(DEFAULTS_KEY).items()}


# -- what a shadow run and the served answer are -----------------------------------------------------------

def shadow_record(job: Job) -> dict[str, Any]:
    """What the report needs of an ended shadow job."""
    result = job.result if job.status == "succeeded" else None
    ran = [a for a in job.attempts if a.outcome != "skipped"]
    return {"job_id": job.job_id, "lane": (job.plan[0].lane if job.plan else None), "kind": job.kind,
            "status": job.status, "objective": objective_of(result), "feasible": feasible(result),
            "time_ms": ran[-1].duration_ms if ran else None, "cost_usd": job.cost_estimate.usd}


def comparison(record: Mapping[str, Any], served: Job) -> dict[str, Any]:
    """A shadow run against the served job's answer (minimisation: a negative gap is a better shadow)."""
    reference = objective_of(served.result) if served.status == "succeeded" else None
    objective = record.get("objective") if record.get("feasible") else None
    return {**record, "served_job_id": served.job_id, "served_status": served.status,
            "served_lane": (served.solver or {}).get("lane"), "served_objective": reference,
            "gap": relative_gap(objective, reference), "versus": compare(objective, reference)}


# -- the store observer -------------------------------------------------------------------------------------

class ShadowObserver:
    """Records each shadow comparison in the transaction that ends the second job of the pair."""

    def __init__(self, history_days: int = 31) -> None:
        self.ttl_s = max(history_days, 1) * 86400 + 86400

    def prepare(self, pipe: Any, before: Job, events: list[Any]) -> Any:
        if before is None or not any(name in ENDING for name, _ in events):
            return None
        if before.shadow_of:
            from jobs.store import job_key  # the store's key, read inside its own transaction

            pipe.watch(job_key(before.shadow_of))
            raw = pipe.get(job_key(before.shadow_of))
            return ("served", Job.model_validate_json(raw) if raw else None)
        if before.shadow:
            pipe.watch(pending_key(before.job_id))
            return ("pending", pipe.hgetall(pending_key(before.job_id)))
        return None

    def observe(self, pipe: Any, before: Job | None, job: Job, events: list[Any], now: float,
                prepared: Any = None) -> None:
        if prepared is None or job.status not in TERMINAL:
            return
        what, value = prepared
        if what == "served":
            record = shadow_record(job)
            served: Job | None = value
            if served is not None and served.status in TERMINAL:
                self._compared(pipe, comparison(record, served), served, now)
            elif served is not None:
                pipe.hset(pending_key(served.job_id), job.job_id, json.dumps(record))
                pipe.expire(pending_key(served.job_id), self.ttl_s)
            return
        for raw in (value or {}).values():
            self._compared(pipe, comparison(json.loads(raw), job), job, now)
        pipe.delete(pending_key(job.job_id))

    def _compared(self, pipe: Any, compared: dict[str, Any], served: Job, now: float) -> None:
        data = {k: v for k, v in compared.items() if k not in ("served_job_id", "job_id")}
        emit(pipe, "shadow.compared", job_id=served.job_id, tenant=served.tenant,
             shadow_job_id=compared["job_id"], **data)
        row = {k: compared.get(k) for k in ("feasible", "versus", "gap", "time_ms", "cost_usd")}
        append_row(pipe, served.tenant, compared["lane"], compared["kind"], {**row, "source": "shadow"}, now,
                   self.ttl_s)


def append_row(pipe: Any, tenant: str, lane: str, kind: str, row: Mapping[str, Any], now: float,
               ttl_s: int) -> None:
    """One comparison for the lane report, on a MULTI pipeline: pushed on its bounded per-day list, which
    the day's index names (the report never scans keys). ``row["source"]`` says what produced it."""
    day = day_of(now)
    key = records_key(day, tenant, lane, kind)
    pipe.lpush(key, json.dumps(row))
    pipe.ltrim(key, 0, MAX_RECORDS_PER_DAY - 1)
    pipe.expire(key, ttl_s)
    pipe.sadd(index_key(day), json.dumps([tenant, lane, kind]))
    pipe.expire(index_key(day), ttl_s)


# -- the lane report -------------------------------------------------------------------------------------------

def report(redis: Any, since: float, tenant: str | None, kind: str | None, now: float | None = None,
           max_days: int = 31, source: str | None = None) -> list[dict[str, Any]]:
    """Per lane x kind over the days from ``since``: runs, feasible share, shares better / equal / worse
    than the served answer, mean and p90 relative gap, p50 and p90 time, estimated cost, and how many of
    the runs were shadow runs and how many a portfolio's attempts (``source`` keeps one of them only)."""
    now = time.time() if now is None else now
    days = []
    day = max(since, now - max_days * 86400)
    while day <= now + 1:
        days.append(day_of(day))
        day += 86400
    if day_of(now) not in days:
        days.append(day_of(now))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name in days:
        for member in redis.smembers(index_key(name)):
            owner, lane, job_kind = json.loads(member)
            if (tenant is not None and owner != tenant) or (kind is not None and job_kind != kind):
                continue
            rows = redis.lrange(records_key(name, owner, lane, job_kind), 0, -1)
            records = (json.loads(row) for row in rows)
            groups.setdefault((lane, job_kind), []).extend(
                row for row in records if source is None or source_of(row) == source)
    if source is not None:
        groups = {key: rows for key, rows in groups.items() if rows}
    return [summarise(lane, job_kind, rows) for (lane, job_kind), rows in sorted(groups.items())]


def summarise(lane: str, kind: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    runs = len(rows)
    compared = [row for row in rows if row.get("versus")]
    gaps = sorted(row["gap"] for row in compared if row.get("gap") is not None)
    times = sorted(row["time_ms"] for row in rows if row.get("time_ms") is not None)

    def share(count: int, of: int) -> float | None:
        return round(count / of, 4) if of else None

    return {"lane": lane, "kind": kind, "runs": runs,
            "feasible_share": share(sum(1 for row in rows if row.get("feasible")), runs),
            "better_share": share(sum(1 for row in compared if row["versus"] == "better"), len(compared)),
            "equal_share": share(sum(1 for row in compared if row["versus"] == "equal"), len(compared)),
            "worse_share": share(sum(1 for row in compared if row["versus"] == "worse"), len(compared)),
            "compared": len(compared),
            "mean_gap": round(sum(gaps) / len(gaps), 6) if gaps else None, "p90_gap": quantile(gaps, 0.9),
            "p50_time_ms": quantile(times, 0.5), "p90_time_ms": quantile(times, 0.9),
            "estimated_cost_usd": round(sum(row.get("cost_usd") or 0.0 for row in rows), 6),
            **{f"{name}_runs": sum(1 for row in rows if source_of(row) == name) for name in SOURCES}}


def source_of(row: Mapping[str, Any]) -> str:
    """What produced a report record; rows written before portfolios counted are shadow runs."""
    return row.get("source") or "shadow"


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted ``values`` (None when empty)."""
    if not values:
        return None
    rank = max(1, min(len(values), math.ceil(q * len(values) - 1e-9)))
    return round(values[rank - 1], 6)
