"""Fleet-wide counters kept in Redis and exposed as Prometheus text.

Jobs are handled by many processes on many hosts (gunicorn workers, Celery workers), so the counters live
in one Redis hash that every process increments inside the same MULTI as the state change they count;
``/metrics`` on any ingress then reports the whole fleet, with no per-process scrape targets.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


COUNTERS = "qgate:metrics:counters"
SEP = "|"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_events(pipe: Any, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Increment the counters that job events stand for."""
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
        depth = GaugeMetricFamily("qgate_queue_depth", "Messages waiting on each lane queue", labels=["lane"])
        workers = GaugeMetricFamily("qgate_lane_workers", "Live workers per lane", labels=["lane"])
        live = self.live_workers(self.client)
        for lane in live:
            depth.add_metric([lane], float(self.client.llen(lane)))
            workers.add_metric([lane], float(len(live[lane])))
        yield depth
        yield workers
