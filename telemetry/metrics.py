"""Fleet-wide counters kept in Redis and exposed as Prometheus text.

Jobs are handled by many processes on many hosts (gunicorn workers, Celery workers), so the counters live
in one Redis hash that every process increments inside the same MULTI as the state change they count;
``/metrics`` on any ingress then reports the whole fleet, with no per-process scrape targets.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

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
            added = rollups.record(pipe, events, job)
        except Exception:  # history is best effort: a roll-up must never refuse a job's transition
            added = {}
        for name, by in added.items():  # lifetime histogram counters for Prometheus
            if name.split(SEP, 1)[0] in rollups.HISTOGRAM_FIELDS:
                pipe.hincrby(COUNTERS, "h" + SEP + name, by)
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


HISTOGRAMS = {"jd": ("qgate_job_duration_seconds", "End-to-end job time (accepted to finished), by final lane"),
              "ad": ("qgate_attempt_duration_seconds", "Attempt run time (queue wait excluded), by lane"),
              "qw": ("qgate_queue_wait_seconds", "Time an attempt waited in its lane queue, by lane")}


def _histograms(counters: Mapping[str, str]) -> Iterator[Any]:
    """Prometheus histograms from the lifetime bucket counters (``h|<name>|<lane>|<bucket>``, sums in ms)."""
    counts: dict[str, dict[str, dict[int, int]]] = {name: {} for name in HISTOGRAMS}
    sums: dict[str, dict[str, float]] = {name: {} for name in HISTOGRAMS}
    for field, value in counters.items():
        parts = field.split(SEP)
        if parts[0] != "h" or len(parts) < 3:
            continue
        name, lane = parts[1], parts[2]
        if name in HISTOGRAMS and len(parts) == 4 and parts[3].isdigit():
            counts[name].setdefault(lane, {})[int(parts[3])] = int(value)
        elif name.endswith("s") and name[:-1] in HISTOGRAMS:
            sums[name[:-1]][lane] = int(value) / 1000
    for name, (metric, help_text) in HISTOGRAMS.items():
        family = HistogramMetricFamily(metric, help_text, labels=["lane"])
        for lane, by_bucket in sorted(counts[name].items()):
            cumulative, buckets = 0, []
            for index, bound in enumerate(rollups.BOUNDS_MS):
                cumulative += by_bucket.get(index, 0)
                buckets.append((repr(round(bound / 1000, 6)), float(cumulative)))
            buckets.append(("+Inf", float(cumulative + by_bucket.get(len(rollups.BOUNDS_MS), 0))))
            family.add_metric([lane], buckets, sums[name].get(lane, 0.0))
        yield family


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

    def __init__(self, client: Any, live_workers: Callable[[Any], Mapping[str, list[str]]]) -> None:
        self.client, self.live_workers = client, live_workers

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
            "audit_quarantined": CounterMetricFamily(
                "qgate_audit_quarantined", "Events the audit log could not hold, moved to the dead-letter stream",
                labels=[]),
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
        for field, value in self.client.hgetall(GAUGES).items():
            name, *labels = field.split(SEP)
            family = gauges.get(name)
            if family is not None and len(labels) == len(family._labelnames):
                family.add_metric(labels, float(value))
        yield from gauges.values()
