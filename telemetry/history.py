"""Reading the roll-ups of ``telemetry.rollups``: key names computed from a time range, summed, summarised.

A range of up to six hours that lies within the minute buckets' lifetime is read minute by minute; longer
or older ranges hour by hour (its ends rounded out to whole hours). Either way a reader asks for at most a
few hundred keys with one pipelined round trip, and never scans the keyspace.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from telemetry import rollups
from telemetry.rollups import BOUNDS_MS, SEP

MINUTE_RANGE_MAX_S = 6 * 3600
WINDOWS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
QUANTILES = (0.5, 0.95, 0.99)


def bucket_keys(start: float, end: float, now: float | None = None) -> list[str]:
    """The bucket keys covering [start, end): minutes for short recent ranges, hours otherwise."""
    now = time.time() if now is None else now
    if end - start <= MINUTE_RANGE_MAX_S and start >= now - rollups.MINUTE_TTL_S + 3600:
        return [f"{rollups.PREFIX}:m:{m}" for m in range(int(start // 60), int(math.ceil(end / 60)))]
    return [f"{rollups.PREFIX}:h:{h}" for h in range(int(start // 3600), int(math.ceil(end / 3600)))]


def hour_starts(start: float, end: float) -> list[int]:
    return [h * 3600 for h in range(int(start // 3600), int(math.ceil(end / 3600)))]


def read_sum(client: Any, keys: Iterable[str]) -> dict[str, int]:
    """The fields of every key, added up."""
    keys = list(keys)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    totals: dict[str, int] = defaultdict(int)
    for fields in pipe.execute():
        for name, value in (fields or {}).items():
            name = name.decode() if isinstance(name, bytes) else name
            totals[name] += int(value)
    return dict(totals)


def quantile(counts: dict[int, int], q: float) -> float | None:
    """The q-quantile (ms) of a bucketed histogram, interpolated geometrically inside its bucket."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index in sorted(counts):
        if seen + counts[index] >= rank:
            lower = BOUNDS_MS[index - 1] if index > 0 else 0.0
            upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else BOUNDS_MS[-1] * 10 ** 0.25
            share = (rank - seen) / counts[index]
            if lower <= 0:
                return upper * share
            return lower * (upper / lower) ** share
        seen += counts[index]
    return BOUNDS_MS[-1]


@dataclass
class LaneSummary:
    lane: str
    accepted: int = 0
    jobs: dict[str, int] = field(default_factory=dict)  # outcome -> count
    attempts: dict[str, int] = field(default_factory=dict)
    job_ms: dict[str, float | None] = field(default_factory=dict)  # p50/p95/p99
    attempt_ms: dict[str, float | None] = field(default_factory=dict)
    queue_wait_ms: dict[str, float | None] = field(default_factory=dict)
    within_budget: int = 0
    over_budget: int = 0
    fallbacks_out: int = 0
    depth_avg: float | None = None

    @property
    def finished(self) -> int:
        return sum(self.jobs.values())

    @property
    def slo_share(self) -> float | None:
        total = self.within_budget + self.over_budget
        return self.within_budget / total if total else None


@dataclass
class Summary:
    lanes: dict[str, LaneSummary]
    fallback_classes: dict[str, int]
    top_reasons: list[tuple[str, int]]
    accepted: int


def _histogram(totals: dict[str, int], name: str, lane: str) -> dict[int, int]:
    prefix = f"{name}{SEP}{lane}{SEP}"
    return {int(k[len(prefix):]): v for k, v in totals.items() if k.startswith(prefix)}


def _quantiles(counts: dict[int, int]) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": quantile(counts, q) for q in QUANTILES}


def summarize(totals: dict[str, int], lanes: Iterable[str]) -> Summary:
    """Per-lane throughput, outcomes, latency quantiles, SLO share and fallbacks from summed buckets."""
    out = {lane: LaneSummary(lane) for lane in lanes}
    classes: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    accepted = 0
    for name, value in totals.items():
        parts = name.split(SEP)
        kind = parts[0]
        if kind == "acc":
            accepted += value
        elif kind == "fbr":
            reasons[parts[1]] += value
        lane_summary = out.get(parts[1]) if len(parts) > 1 else None
        if kind == "fb":
            classes[parts[3]] += value
        if lane_summary is None:
            continue
        if kind == "job":
            lane_summary.jobs[parts[3]] = lane_summary.jobs.get(parts[3], 0) + value
        elif kind == "att":
            lane_summary.attempts[parts[2]] = lane_summary.attempts.get(parts[2], 0) + value
        elif kind == "slo":
            if parts[2] == "in":
                lane_summary.within_budget += value
            else:
                lane_summary.over_budget += value
        elif kind == "fb":
            lane_summary.fallbacks_out += value
    for lane, summary in out.items():
        summary.job_ms = _quantiles(_histogram(totals, "jd", lane))
        summary.attempt_ms = _quantiles(_histogram(totals, "ad", lane))
        summary.queue_wait_ms = _quantiles(_histogram(totals, "qw", lane))
        samples = totals.get(f"depthn{SEP}{lane}", 0)
        if samples:
            summary.depth_avg = totals.get(f"depth{SEP}{lane}", 0) / samples
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:5]
    return Summary(out, dict(classes), top, accepted)


def window_summary(client: Any, window: str, lanes: Iterable[str], now: float | None = None) -> Summary:
    now = time.time() if now is None else now
    seconds = WINDOWS[window]
    return summarize(read_sum(client, bucket_keys(now - seconds, now, now)), lanes)


# -- usage -----------------------------------------------------------------------------------------------

USAGE_COLUMNS = ("day", "group", "jobs", "succeeded", "failed", "cancelled", "qpu_shots", "usd")


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def usage(client: Any, start: float, end: float, group_by: str, tenant: str | None = None) -> list[dict[str, Any]]:
    """Jobs, outcomes, QPU shots and estimated USD per day and per ``group_by`` (``tenant``, ``lane``,
    ``kind`` or ``metadata.<key>``), from hour buckets; ``tenant`` limits the rows to one tenant."""
    starts = hour_starts(start, end)
    meta_key = group_by.split(".", 1)[1] if group_by.startswith("metadata.") else None
    suffix = ":meta" if meta_key is not None else ""
    pipe = client.pipeline(transaction=False)
    for hour in starts:
        pipe.hgetall(f"{rollups.PREFIX}:h:{hour // 3600}{suffix}")
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(day: str, group: str) -> dict[str, Any]:
        return rows.setdefault((day, group), {"day": day, "group": group, "jobs": 0, "succeeded": 0, "failed": 0,
                                              "cancelled": 0, "qpu_shots": 0, "usd": 0})

    for hour, fields in zip(starts, pipe.execute()):
        day = day_of(hour)
        for name, value in (fields or {}).items():
            name = name.decode() if isinstance(name, bytes) else name
            parts, value = name.split(SEP), int(value)
            if meta_key is not None:
                _usage_meta(row, day, parts, value, meta_key, tenant)
            else:
                _usage_bucket(row, day, parts, value, group_by, tenant)
    for item in rows.values():
        item["usd"] = round(item["usd"] / 1_000_000, 6)
    return sorted(rows.values(), key=lambda item: (item["day"], item["group"]))


def _usage_bucket(row: Any, day: str, parts: list[str], value: int, group_by: str, tenant: str | None) -> None:
    kind = parts[0]
    if kind == "job":
        _, lane, job_kind, outcome, owner = parts
        if tenant is not None and owner != tenant:
            return
        group = {"tenant": owner, "lane": lane, "kind": job_kind}[group_by]
        target = row(day, group)
        target["jobs"] += value
        target[outcome] = target.get(outcome, 0) + value
    elif kind in ("shots", "usd") and group_by == "tenant":
        if tenant is not None and parts[1] != tenant:
            return
        row(day, parts[1])["qpu_shots" if kind == "shots" else "usd"] += value
    elif kind in ("shots", "usd"):  # only the qpu lane, which solves circuits only, has shots and a price
        if tenant is not None and parts[1] != tenant:
            return
        row(day, "qpu" if group_by == "lane" else "circuit")["qpu_shots" if kind == "shots" else "usd"] += value


def _usage_meta(row: Any, day: str, parts: list[str], value: int, key: str, tenant: str | None) -> None:
    owner, meta, meta_value, measure = parts[0], parts[1], parts[2], parts[3]
    if meta != key or (tenant is not None and owner != tenant):
        return
    target = row(day, meta_value)
    column = {"shots": "qpu_shots"}.get(measure, measure)
    target[column] = target.get(column, 0) + value


def per_tenant_cost(client: Any, start: float, end: float) -> dict[str, dict[str, Any]]:
    """Totals per tenant over the range (the console's tenant table and the browser test read this)."""
    totals: dict[str, dict[str, Any]] = {}
    for item in usage(client, start, end, "tenant"):
        into = totals.setdefault(item["group"], {"jobs": 0, "qpu_shots": 0, "usd": 0.0})
        into["jobs"] += item["jobs"]
        into["qpu_shots"] += item["qpu_shots"]
        into["usd"] = round(into["usd"] + item["usd"], 6)
    return totals
