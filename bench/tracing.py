"""What OpenTelemetry tracing costs on the submit path, as ratios against the same path untraced, side by side.

One Redis and one heuristic worker; four gunicorn ingresses on them, identical but for the standard
OpenTelemetry variables: ``on`` exports every span (Flask's, Redis's, ``qgate.admit``) over OTLP/HTTP to a
real collector started here, ``sampled`` keeps one trace in ten (``OTEL_TRACES_SAMPLER=
parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``), ``no_redis_spans`` traces everything but
Redis commands (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis``), ``off`` has no tracer at all. Rounds
alternate between them so that the machine's noise falls on all alike:

1. Latency: p50/p99 of single async submits (202) from one client, taking turns between the sides.
2. Throughput: submits per second from ``--threads`` clients.

The collector's span count shows the ``on`` side really traced. Usage:
python -m bench.tracing [--submits N] [--seconds S] [--threads T] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.ratelimit import LIMITS_ON, second_web, submit_latencies
from bench.run import percentile, rate
from tests.integration.otlp_collector import Collector
from tests.integration.stack import Process, Stack

SMALL = {"problem": {"kind": "tsp", "locations": [[0, 0], [3, 4], [6, 0], [3, -4]]}}


def interleaved_latencies(sides: dict[str, str], headers: dict[str, str],
                          count: int) -> list[tuple[str, list[float], int]]:
    """Single submits taking turns between the sides, one each per turn, so that a burst of load on the
    machine falls on all of them: (side, milliseconds, non-202 answers)."""
    sessions = {side: requests.Session() for side in sides}
    times: dict[str, list[float]] = {side: [] for side in sides}
    errors = {side: 0 for side in sides}
    for _ in range(count):
        for side, url in sides.items():
            started = time.perf_counter()
            reply = sessions[side].post(url + "/api/v1/quantum/solve", json=SMALL, headers=headers, timeout=30)
            times[side].append((time.perf_counter() - started) * 1000)
            errors[side] += reply.status_code != 202
    return [(side, times[side], errors[side]) for side in sides]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submits", type=int, default=200, help="single-client submits per side and round")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run per side and round")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    collector = Collector()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), **LIMITS_ON)
        extras: list[Process] = []
        try:
            stack.start_redis()
            stack.start_worker("heuristic")
            stack.start_web()
            off_web, off_url = second_web(stack)
            extras.append(off_web)
            on_web, on_url = second_web(stack, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                                        OTEL_BSP_SCHEDULE_DELAY="500")
            extras.append(on_web)
            sampled_web, sampled_url = second_web(stack, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                                                  OTEL_BSP_SCHEDULE_DELAY="500",
                                                  OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                                                  OTEL_TRACES_SAMPLER_ARG="0.1")
            extras.append(sampled_web)
            lean_web, lean_url = second_web(stack, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                                            OTEL_BSP_SCHEDULE_DELAY="500",
                                            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="redis")
            extras.append(lean_web)
            token = stack.token(stack.create_client("bench", "quantum:solve solver:heuristic"))
            headers = stack.headers(token, 60_000)
            sides = {"on": on_url, "sampled": sampled_url, "no_redis_spans": lean_url, "off": off_url}
            for url in sides.values():
                submit_latencies(url, headers, 20)
            latencies: dict[str, list[float]] = {side: [] for side in sides}
            rates: dict[str, list[float]] = {side: [] for side in sides}
            errors = {side: 0 for side in sides}
            for _ in range(args.rounds):
                for side, times, failed in interleaved_latencies(sides, headers, args.submits):
                    latencies[side] += times
                    errors[side] += failed
                for side, url in sides.items():
                    def submit(session: requests.Session, url: str = url) -> bool:
                        return session.post(url + "/api/v1/quantum/solve", json=SMALL, headers=headers,
                                            timeout=30).status_code == 202
                    per_s, failed = rate(submit, args.seconds, args.threads)
                    rates[side].append(per_s)
                    errors[side] += failed
            time.sleep(1.5)  # the batch processor's last export
            p50 = {side: statistics.median(times) for side, times in latencies.items()}
            rps = {side: statistics.mean(values) for side, values in rates.items()}
            with collector.lock:
                spans = list(collector.spans)
            report["submit_latency"] = {
                "submits_per_side": len(latencies["on"]),
                "traced_p50_ms": round(p50["on"], 2), "untraced_p50_ms": round(p50["off"], 2),
                "traced_p99_ms": round(percentile(latencies["on"], 0.99), 2),
                "untraced_p99_ms": round(percentile(latencies["off"], 0.99), 2),
                "p50_ratio_traced_over_untraced": round(p50["on"] / p50["off"], 3),
                "added_p50_ms": round(p50["on"] - p50["off"], 2),
                "sampled_p50_ms": round(p50["sampled"], 2),
                "p50_ratio_sampled_over_untraced": round(p50["sampled"] / p50["off"], 3),
                "no_redis_spans_p50_ms": round(p50["no_redis_spans"], 2),
                "p50_ratio_no_redis_spans_over_untraced": round(p50["no_redis_spans"] / p50["off"], 3)}
            report["submit_throughput"] = {
                "threads": args.threads, "seconds_per_side": args.seconds * args.rounds,
                "traced_per_s": round(rps["on"], 1), "untraced_per_s": round(rps["off"], 1),
                "ratio_traced_over_untraced": round(rps["on"] / rps["off"], 3),
                "sampled_per_s": round(rps["sampled"], 1),
                "ratio_sampled_over_untraced": round(rps["sampled"] / rps["off"], 3),
                "no_redis_spans_per_s": round(rps["no_redis_spans"], 1),
                "ratio_no_redis_spans_over_untraced": round(rps["no_redis_spans"] / rps["off"], 3)}
            report["collector"] = {"spans": len(spans),
                                   "admit_spans": sum(1 for span in spans if span[2] == "qgate.admit"),
                                   "services": sorted({span[0] for span in spans})}
            report["errors"] = errors
        finally:
            for extra in extras:
                extra.stop()
            stack.stop()
            collector.server.shutdown()
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracing.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
