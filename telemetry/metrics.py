"""Fleet-wide counters kept in Redis and exposed as Prometheus text.

Jobs are handled by many processes on many hosts (gunicorn workers, Celery workers), so the counters live
in one Redis hash that every process increments inside the same MULTI as the state change they count;
``/metrics`` on any ingress then reports the whole fleet, with no per-process scrape targets.
"""

from __future__ import annotations

import time

from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from audit.channel import GROUP as AUDIT_GROUP, STREAM as AUDIT_STREAM
from solvers.registry import lane_queues
from telemetry import rollups


COUNTERS = "qgate:metrics:counters"
# Values that go up and down (breaker state, the canary's last fidelity), set in the MULTI that changes them.
GAUGES = "qgate:metrics:gauges"
SEP = "|"
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def set_gauge(pipe: Any, name: str, labels: Iterable[str], value: float) -> None:
    pipe.hset(GAUGES, SEP.join((name, *labels)), value)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_events(pipe: Any, events: Iterable[tuple[str, dict[str, Any]]], job: Any = None) -> None:
    """Increment the counters that job events stand for, and (given the ``job`` they change) its roll-ups
    in ``telemetry.rollups``, on the same pipeline: one transaction with the change itself."""
    events = list(events)
    if job is not None:
        try:
            rollups.record(pipe, events, job)
            for name, by in histogram_increments(events, job).items():
                pipe.hincrby(COUNTERS, name, by)
        except Exception:  # history is best effort: a roll-up must never refuse a job's transition
            pass
    for event_type, data in events:
        if event_type.startswith("attempt.") and "outcome" in data:
            pipe.hincrby(COUNTERS, SEP.join(("attempts", data["lane"], data["outcome"])), 1)
        elif event_type == "job.fallback":
            pipe.hincrby(COUNTERS, SEP.join(("fallbacks", data["from"], data["to"])), 1)
        elif event_type in ("job.succeeded", "job.failed", "job.cancelled"):
            lane = (data.get("solver") or {}).get("lane", "none")
            pipe.hincrby(COUNTERS, SEP.join(("jobs", lane, event_type.split(".")[1])), 1)
        elif event_type == "job.accepted":
            pipe.hincrby(COUNTERS, SEP.join(("accepted", data.get("kind", "?"))), 1)


HISTOGRAMS = {"jd": ("qgate_job_duration_seconds",
                     "End-to-end job time (accepted to finished), by final lane, kind and outcome"),
              "ad": ("qgate_attempt_duration_seconds",
                     "Attempt run time (queue wait excluded), by lane, job kind and attempt outcome"),
              "qw": ("qgate_queue_wait_seconds",
                     "Time an attempt waited in its lane queue, by lane, job kind and attempt outcome")}
_TERMINAL = {"job.succeeded": "succeeded", "job.failed": "failed", "job.cancelled": "cancelled"}


def histogram_increments(events: Iterable[tuple[str, dict[str, Any]]], job: Any) -> dict[str, int]:
    """Lifetime histogram counters for ``events`` of ``job``: ``hk|<name>|<lane>|<kind>|<outcome>|<bucket>``
    and the sum in ms ``hks|<name>|<lane>|<kind>|<outcome>``. Lanes, kinds and outcomes are closed sets,
    so the series count is fixed (lanes x kinds x outcomes x 28 buckets at most)."""
    out: dict[str, int] = {}

    def add(name: str, lane: str, outcome: str, ms: float) -> None:
        labels = SEP.join(rollups._part(p) for p in (lane, job.kind, outcome))
        bucket = SEP.join(("hk", name, labels, str(rollups.bucket_of(ms))))
        total = SEP.join(("hks", name, labels))
        out[bucket] = out.get(bucket, 0) + 1
        out[total] = out.get(total, 0) + int(ms)

    for event_type, data in events:
        if event_type.startswith("attempt.") and "outcome" in data and data["outcome"] != "skipped":
            add("ad", data["lane"], data["outcome"], float(data.get("duration_ms", 0.0)))
            add("qw", data["lane"], data["outcome"], float(data.get("queued_ms", 0.0)))
        elif event_type in _TERMINAL:
            start, end = rollups._seconds(job.created_at), rollups._seconds(job.finished_at)
            if start is not None and end is not None:
                lane, outcome, ms = rollups._final_lane(job), _TERMINAL[event_type], max(0.0, (end - start) * 1000)
                add("jd", lane, outcome, ms)
                met = outcome == "succeeded" and ms <= job.latency_budget_ms
                name = SEP.join(("slo", rollups._part(lane), "met" if met else "missed"))
                out[name] = out.get(name, 0) + 1
    return out


def _histograms(counters: Mapping[str, str]) -> Iterator[Any]:
    """Prometheus histograms from the lifetime bucket counters (``hk|<name>|<lane>|<kind>|<outcome>|<b>``)."""
    counts: dict[str, dict[tuple[str, ...], dict[int, int]]] = {name: {} for name in HISTOGRAMS}
    sums: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in HISTOGRAMS}
    for field, value in counters.items():
        parts = field.split(SEP)
        if parts[0] == "hk" and len(parts) == 6 and parts[1] in HISTOGRAMS and parts[5].isdigit():
            counts[parts[1]].setdefault(tuple(parts[2:5]), {})[int(parts[5])] = int(value)
        elif parts[0] == "hks" and len(parts) == 5 and parts[1] in HISTOGRAMS:
            sums[parts[1]][tuple(parts[2:5])] = int(value) / 1000
    for name, (metric, help_text) in HISTOGRAMS.items():
        family = HistogramMetricFamily(metric, help_text, labels=["lane", "kind", "outcome"])
        for labels, by_bucket in sorted(counts[name].items()):
            cumulative, buckets = 0, []
            for index, bound in enumerate(rollups.BOUNDS_MS):
                cumulative += by_bucket.get(index, 0)
                buckets.append((repr(round(bound / 1000, 6)), float(cumulative)))
            buckets.append(("+Inf", float(cumulative + by_bucket.get(len(rollups.BOUNDS_MS), 0))))
            family.add_metric(list(labels), buckets, sums[name].get(labels, 0.0))
        yield family


WEBHOOK_OUTCOMES = frozenset({"delivered", "retry", "failed"})
AUDIT_CHECKPOINT_AT = "audit_checkpoint_at"


def count_webhook(client: Any, outcome: str) -> None:
    """Count one webhook delivery attempt by its outcome (stale or vanished claims are not attempts)."""
    if outcome in WEBHOOK_OUTCOMES:
        client.hincrby(COUNTERS, SEP.join(("webhooks", outcome)), 1)


def count_request(client: Any, method: str, route: str, status: int) -> None:
    """Count one answered request; ``route`` is the matched rule, or ``unmatched``, never the raw path.

    Any token is a valid HTTP method, so a client could add a series per request (``PROPFIND``,
    ``FOO``...) and grow the hash and every scrape without bound: methods outside KNOWN_METHODS count
    as ``other``.
    """
    label = method if method in KNOWN_METHODS else "other"
    client.hincrby(COUNTERS, SEP.join(("requests", label, route, str(status))), 1)


class RedisCollector(Collector):
    """Reads the shared counters, queue depths and live workers at scrape time."""

    def __init__(self, client: Any, live_workers: Callable[[Any], Mapping[str, list[str]]],
                 now: Callable[[], float] = time.time) -> None:
        self.client, self.live_workers, self.now = client, live_workers, now

    def collect(self) -> Iterator[Any]:
        counters = self.client.hgetall(COUNTERS)
        families = {
            "requests": CounterMetricFamily("qgate_http_requests", "HTTP requests handled",
                                            labels=["method", "route", "status"]),
            "accepted": CounterMetricFamily("qgate_jobs_accepted", "Jobs accepted", labels=["kind"]),
            "jobs": CounterMetricFamily("qgate_jobs_finished", "Jobs finished, by final lane and outcome",
                                        labels=["lane", "outcome"]),
            "attempts": CounterMetricFamily("qgate_attempts", "Lane attempts, by lane and outcome",
                                            labels=["lane", "outcome"]),
            "fallbacks": CounterMetricFamily("qgate_fallbacks", "Fallbacks from one lane to the next",
                                             labels=["from_lane", "to_lane"]),
            "breaker": CounterMetricFamily("qgate_breaker_transitions",
                                           "Lane circuit breaker transitions, by lane and the state entered",
                                           labels=["lane", "to_state"]),
            "policy_reload_failures": CounterMetricFamily(
                "qgate_policy_reload_failures", "Policy files that changed but could not be loaded (the last good "
                "policy stayed in force)", labels=[]),
            "audit_quarantined": CounterMetricFamily(
                "qgate_audit_quarantined", "Events the audit log could not hold, moved to the dead-letter stream",
                labels=[]),
            "audit_append_failures": CounterMetricFamily(
                "qgate_audit_append_failures", "Audit writer stops on a failed write or fsync of the log",
                labels=[]),
            "slo": CounterMetricFamily("qgate_jobs_budget", "Finished jobs by final lane: succeeded within "
                                       "their latency budget (met) or not (missed); the SLO", labels=["lane", "budget"]),
            "webhooks": CounterMetricFamily("qgate_webhook_deliveries", "Webhook delivery attempts, by outcome",
                                            labels=["outcome"]),
        }
        for field, value in counters.items():
            name, *labels = field.split(SEP)
            family = families.get(name)
            if family is not None and len(labels) == len(family._labelnames):
                family.add_metric(labels, float(value))
        yield from families.values()
        yield from _histograms(counters)
        depth = GaugeMetricFamily("qgate_queue_depth", "Messages waiting on each lane queue", labels=["lane"])
        workers = GaugeMetricFamily("qgate_lane_workers", "Live workers per lane", labels=["lane"])
        live = self.live_workers(self.client)
        for lane in live:
            depth.add_metric([lane], float(sum(self.client.llen(queue) for queue in lane_queues(lane))))
            workers.add_metric([lane], float(len(live[lane])))
        yield depth
        yield workers
        gauges = {
            "breaker_state": GaugeMetricFamily(
                "qgate_breaker_state", "Lane circuit breaker state: 0 closed, 1 half-open, 2 open", labels=["lane"]),
            "canary_fidelity": GaugeMetricFamily(
                "qgate_canary_fidelity", "Hellinger fidelity of the lane's last calibration canary (GHZ) against "
                "the ideal distribution", labels=["lane"]),
            "canary_last_run": GaugeMetricFamily(
                "qgate_canary_last_run_timestamp_seconds", "When the lane's last calibration canary ran (Unix "
                "time), whether or not it could be scored", labels=["lane"]),
        }
        checkpoint = GaugeMetricFamily("qgate_audit_checkpoint_age_seconds",
                                       "Seconds since the audit writer last saved a signed checkpoint", labels=[])
        for field, value in self.client.hgetall(GAUGES).items():
            name, *labels = field.split(SEP)
            family = gauges.get(name)
            if family is not None and len(labels) == len(family._labelnames):
                family.add_metric(labels, float(value))
            elif name == AUDIT_CHECKPOINT_AT:
                checkpoint.add_metric([], max(0.0, self.now() - float(value)))
        yield from gauges.values()
        yield checkpoint
        yield from self._audit_stream()

    def _audit_stream(self) -> Iterator[Any]:
        """Writer lag from the audit stream: events in it, and those its writer group has not yet read or
        acknowledged (every event is deleted from the stream once written, so the length is the backlog)."""
        length = GaugeMetricFamily("qgate_audit_stream_length", "Audit events waiting in the stream", labels=[])
        lag = GaugeMetricFamily("qgate_audit_writer_lag", "Audit events not yet written: read but unacknowledged "
                                "(pending) plus not yet read by the writer group (undelivered)", labels=[])
        try:
            length.add_metric([], float(self.client.xlen(AUDIT_STREAM)))
            groups = {g["name"]: g for g in self.client.xinfo_groups(AUDIT_STREAM)}
            group = groups.get(AUDIT_GROUP)
            if group is not None:
                waiting = int(group.get("pending") or 0) + int(group.get("lag") or 0)
                lag.add_metric([], float(waiting))
        except Exception:  # no stream yet: nothing emitted, no lag to report
            pass
        yield length
        yield lag
