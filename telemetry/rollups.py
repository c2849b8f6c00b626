"""Persistent history: per-minute and per-hour roll-ups of job events, written in the job's own transaction.

``count_events`` (telemetry.metrics) calls ``record`` with the pipeline that changes a job, so a roll-up and
the change it counts are committed together (MULTI/EXEC, or the admission Lua script, which replays these
commands: only plain commands are used). Every bucket is one Redis hash named after its start, so a reader
computes the key names from a time range and never scans the keyspace:

- ``qgate:hist:m:<unix minute>`` — kept MINUTE_TTL_S (a day and a bit);
- ``qgate:hist:h:<unix hour>`` — the same fields, kept ``history_days``;
- ``qgate:hist:h:<unix hour>:meta`` — jobs, shots and USD per tenant and metadata key/value (hours only:
  metadata is the one field whose cardinality the caller chooses);
- ``qgate:hist:recent`` and ``qgate:hist:recent:<tenant>`` — the latest job ids (bounded lists) for the
  console's job search.

Fields (``|``-separated; tenants never hold ``|``, other parts are cleaned by ``_part``):

=========================================  ================================================================
``acc|<kind>|<tenant>``                     jobs accepted
``job|<lane>|<kind>|<outcome>|<tenant>``    jobs finished, by the lane that ended them (``none``: no attempt)
``att|<lane>|<outcome>``                    attempts concluded
``jd|<lane>|<b>``, ``jds|<lane>``           end-to-end job duration: histogram bucket ``b``, sum in ms
``ad|<lane>|<b>``, ``ads|<lane>``           attempt run time (queue wait excluded; skipped attempts left out)
``qw|<lane>|<b>``, ``qws|<lane>``           attempt queue wait
``slo|<lane>|in`` / ``slo|<lane>|out``      finished jobs that succeeded within their budget / did not
``fb|<from>|<to>|<class>``                  fallbacks by reason class
``fbr|<reason>``                            fallbacks by reason, digits folded to ``#``, cut to 80 characters
``shots|<tenant>``, ``usd|<tenant>``        QPU shots; estimated USD in micro-dollars (integers add exactly)
``depth|<lane>``, ``depthn|<lane>``         queue-depth samples: sum and count (the watchdog samples)
=========================================  ================================================================
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any, Iterable

PREFIX = "qgate:hist"
RECENT = f"{PREFIX}:recent"
RECENT_MAX = 2000
RECENT_PER_TENANT_MAX = 500
MINUTE_TTL_S = 26 * 3600
DEFAULT_HISTORY_DAYS = 14
SEP = "|"
# Fixed log-spaced histogram buckets: upper bounds 10^(k/4) ms, 1 ms to ~53 min (4 per decade, ratio 1.78);
# index len(BOUNDS_MS) holds everything above.
BOUNDS_MS: tuple[float, ...] = tuple(10 ** (k / 4) for k in range(27))
MAX_META_KEYS = 8
MAX_META_VALUE_CHARS = 64

_history_days = DEFAULT_HISTORY_DAYS
_TERMINAL_EVENTS = {"job.succeeded": "succeeded", "job.failed": "failed", "job.cancelled": "cancelled"}
_CLASS_PREFIX = re.compile(r"^([a-z_]+):")
_DIGITS = re.compile(r"\d+(\.\d+)?")


def configure(history_days: int) -> None:
    """How long hour roll-ups are kept (``QGATE_HISTORY_DAYS``), set by each process's composition root."""
    global _history_days
    _history_days = max(1, int(history_days))


def history_days() -> int:
    return _history_days


def minute_key(ts: float) -> str:
    return f"{PREFIX}:m:{int(ts // 60)}"


def hour_key(ts: float) -> str:
    return f"{PREFIX}:h:{int(ts // 3600)}"


def meta_key(ts: float) -> str:
    return hour_key(ts) + ":meta"


def recent_key(tenant: str | None = None) -> str:
    return RECENT if tenant is None else f"{RECENT}:{tenant}"


def bucket_of(ms: float) -> int:
    """The histogram bucket of a duration: the first bound it does not exceed."""
    if ms <= 1:
        return 0
    index = math.ceil(4 * math.log10(ms) - 1e-9)
    return min(index, len(BOUNDS_MS))


def _part(value: Any, limit: int = 64) -> str:
    """A label safe inside a field name: no separator, bounded length."""
    return str(value).replace(SEP, "/").replace("\n", " ")[:limit] or "-"


def reason_class(reason: str, outcome: str | None) -> str:
    """A fallback's class: the reason's own prefix (``breaker:``, ``predicted:``, ``quota:`` ...), else the
    outcome of the attempt that fell back (``timeout``, ``failed``, ``skipped``), else ``other``."""
    match = _CLASS_PREFIX.match(reason or "")
    if match:
        return match.group(1)
    if "lease expired" in (reason or ""):
        return "lease_expired"
    return outcome or "other"


def reason_label(reason: str) -> str:
    return _part(_DIGITS.sub("#", reason or "-"), 80)


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _final_lane(job: Any) -> str:
    if job.solver and job.solver.get("lane"):
        return str(job.solver["lane"])
    ran = [a for a in job.attempts if a.outcome != "skipped"]
    return ran[-1].lane if ran else "none"


def _shots(job: Any) -> int:
    if _final_lane(job) != "qpu" or not isinstance(job.result, dict):
        return 0
    counts = job.result.get("counts")
    if isinstance(counts, dict):
        return int(sum(v for v in counts.values() if isinstance(v, (int, float))))
    return 0


def _usd_micro(job: Any) -> int:
    """The job's estimated USD when a qpu attempt actually ran (in micro-dollars)."""
    if any(a.lane == "qpu" and a.outcome != "skipped" for a in job.attempts):
        return int(round(float(job.cost_estimate.usd) * 1_000_000))
    return 0


def increments(events: Iterable[tuple[str, dict[str, Any]]], job: Any) -> tuple[dict[str, int], dict[str, int]]:
    """The bucket fields and the metadata fields that ``events`` of ``job`` add to (pure: unit-tested)."""
    fields: dict[str, int] = {}
    meta: dict[str, int] = {}

    def add(target: dict[str, int], *parts: Any, by: int = 1) -> None:
        name = SEP.join(_part(p) for p in parts)
        target[name] = target.get(name, 0) + by

    tenant = job.tenant
    for event_type, data in events:
        if event_type == "job.accepted":
            add(fields, "acc", job.kind, tenant)
        elif event_type.startswith("attempt.") and "outcome" in data:
            lane, outcome = data["lane"], data["outcome"]
            add(fields, "att", lane, outcome)
            if outcome != "skipped":
                add(fields, "ad", lane, bucket_of(data.get("duration_ms", 0.0)))
                add(fields, "ads", lane, by=int(data.get("duration_ms", 0.0)))
                add(fields, "qw", lane, bucket_of(data.get("queued_ms", 0.0)))
                add(fields, "qws", lane, by=int(data.get("queued_ms", 0.0)))
        elif event_type == "job.fallback":
            last = job.attempts[-1].outcome if job.attempts else None
            add(fields, "fb", data.get("from"), data.get("to"), reason_class(data.get("reason", ""), last))
            add(fields, "fbr", reason_label(data.get("reason", "")))
        elif event_type in _TERMINAL_EVENTS:
            outcome, lane = _TERMINAL_EVENTS[event_type], _final_lane(job)
            add(fields, "job", lane, job.kind, outcome, tenant)
            start, end = _seconds(job.created_at), _seconds(job.finished_at)
            if start is not None and end is not None:
                ms = max(0.0, (end - start) * 1000)
                add(fields, "jd", lane, bucket_of(ms))
                add(fields, "jds", lane, by=int(ms))
                add(fields, "slo", lane, "in" if outcome == "succeeded" and ms <= job.latency_budget_ms else "out")
            shots, usd = _shots(job), _usd_micro(job)
            if shots:
                add(fields, "shots", tenant, by=shots)
            if usd:
                add(fields, "usd", tenant, by=usd)
            metadata = (job.request or {}).get("metadata") or {}
            for key in sorted(metadata)[:MAX_META_KEYS]:
                value = _part(metadata[key], MAX_META_VALUE_CHARS)
                add(meta, tenant, key, value, "jobs")
                add(meta, tenant, key, value, outcome)
                if shots:
                    add(meta, tenant, key, value, "shots", by=shots)
                if usd:
                    add(meta, tenant, key, value, "usd", by=usd)
    return fields, meta


HISTOGRAM_FIELDS = ("jd", "jds", "ad", "ads", "qw", "qws")


def record(pipe: Any, events: list[tuple[str, dict[str, Any]]], job: Any, now: float | None = None) -> dict[str, int]:
    """Add ``events`` of ``job`` to the current minute and hour buckets, on ``pipe`` (the job's transaction);
    returns the bucket fields added (``count_events`` keeps the histogram ones as lifetime counters too)."""
    fields, meta = increments(events, job)
    if not fields and not meta:
        return fields
    now = time.time() if now is None else now
    hour_ttl = _history_days * 86400
    for key, ttl in ((minute_key(now), MINUTE_TTL_S), (hour_key(now), hour_ttl)):
        for name, by in fields.items():
            pipe.hincrby(key, name, by)
        pipe.expire(key, ttl)
    if meta:
        for name, by in meta.items():
            pipe.hincrby(meta_key(now), name, by)
        pipe.expire(meta_key(now), hour_ttl)
    if any(event_type == "job.accepted" for event_type, _ in events):
        for key, bound in ((recent_key(), RECENT_MAX), (recent_key(job.tenant), RECENT_PER_TENANT_MAX)):
            pipe.lpush(key, job.job_id)
            pipe.ltrim(key, 0, bound - 1)
            pipe.expire(key, hour_ttl)
    return fields


def sample_queue_depths(client: Any, depths: dict[str, int], now: float | None = None) -> None:
    """One queue-depth sample per lane into the current minute and hour (the watchdog calls this)."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=True)
    for key, ttl in ((minute_key(now), MINUTE_TTL_S), (hour_key(now), _history_days * 86400)):
        for lane, depth in depths.items():
            pipe.hincrby(key, f"depth{SEP}{lane}", int(depth))
            pipe.hincrby(key, f"depthn{SEP}{lane}", 1)
        pipe.expire(key, ttl)
    pipe.execute()
