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

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ratelimit import LIMITS_ON, SMALL, second_web, submit_latencies
from bench.sides import measure_sides, side_arguments
from tests.integration.otlp_collector import Collector
from tests.integration.stack import Process, Stack


def main() -> None:
    args = side_arguments().parse_args()
    report: dict[str, Any] = {}
    collector = Collector()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), **LIMITS_ON)
        extras: list[Process] = []
        try:
            stack.start_redis()
            stack.start_worker("heuristic")
            stack.start_web()
            exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "500"}
            settings: dict[str, dict[str, str]] = {
                "on": exporting,
                "sampled": {**exporting, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                            "OTEL_TRACES_SAMPLER_ARG": "0.1"},
                "no_redis_spans": {**exporting, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis"},
                "off": {},
            }
            sides = {}
            for side, env in settings.items():
                process, sides[side] = second_web(stack, **env)
                extras.append(process)
            token = stack.token(stack.create_client("bench", "quantum:solve solver:heuristic"))
            headers = stack.headers(token, 60_000)
            for url in sides.values():
                submit_latencies(url, headers, 20)
            figures = measure_sides(sides, headers, SMALL, submits=args.submits, seconds=args.seconds,
                                    threads=args.threads, rounds=args.rounds)
            time.sleep(1.5)  # the batch processor's last export
            with collector.lock:
                spans = list(collector.spans)
            report["sides"] = figures.report(base="off")
            report["collector"] = {"spans": len(spans),
                                   "admit_spans": sum(1 for span in spans if span[2] == "qgate.admit"),
                                   "services": sorted({span[0] for span in spans})}
            report["errors"] = figures.errors
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
