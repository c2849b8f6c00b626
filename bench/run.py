"""Benchmarks through the whole running stack, reported as ratios measured side by side in one run.

1. Sync fast path: p50/p99 of a 20-node tsp through HTTP → ingress → Redis → Celery → PyVRP → back,
   against the same solver called in-process on the same problem and budget: the gap is the gateway's
   overhead.
2. Async submits per second (202s) against GET /healthz on the same gunicorn, in alternating windows
   so that both see the same machine. Measured twice: the admission path alone (the lane workers
   stopped, their heartbeats kept up by the bench, the audit writer writing every admission event),
   which is the ratio of issue 9 (target >= 0.45); and the whole system, with the lane workers
   running every accepted job on the same two cores, for information.

Usage: python -m bench.run [--sync N] [--async-seconds S] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests

from routing.health import beat
from solvers.base import LaneLimits
from solvers.heuristic import PyVrpRouting
from solvers.problems import parse_problem
from tests.integration.stack import Stack

ALL_SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic"


def tsp(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {"kind": "tsp", "locations": [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(n)]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def in_process(problems: list[dict[str, Any]], budget_s: float) -> list[float]:
    solver = PyVrpRouting()
    solver.solve(parse_problem(problems[0]), time_limit_s=budget_s, seed=1)  # warm, as the workers are
    times = []
    for data in problems:
        started = time.perf_counter()
        solver.solve(parse_problem(data), time_limit_s=budget_s, seed=1)
        times.append((time.perf_counter() - started) * 1000)
    return times


def through_gateway(stack: Stack, token: str, problems: list[dict[str, Any]], budget_ms: int) -> tuple[list[float], int]:
    session = requests.Session()
    headers = stack.headers(token, budget_ms)
    times, failures = [], 0
    for data in problems:
        started = time.perf_counter()
        reply = session.post(stack.url + "/api/v1/quantum/solve", json={"problem": data, "seed": 1},
                             headers=headers, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        failures += reply.status_code != 200
    return times, failures


def rate(call: Callable[[requests.Session], bool], seconds: float, threads: int) -> tuple[float, int]:
    """Requests per second from ``threads`` clients for ``seconds``; bounded in time and count."""
    done, errors = [0], [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < end:
            ok = call(session)
            with lock:
                done[0] += 1
                errors[0] += not ok
    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return done[0] / (time.monotonic() - started), errors[0]


TARGET_SUBMIT_RATIO = 0.45  # admission against GET /healthz (issue 9, item 6)


def interleaved(calls: dict[str, Callable[[requests.Session], bool]], seconds: float, threads: int,
                rounds: int = 4) -> dict[str, tuple[float, int]]:
    """Requests/s of each call, measured in ``rounds`` alternating windows of ``seconds / rounds``."""
    totals = {name: [0.0, 0] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            per_s, errors = rate(call, seconds / rounds, threads)
            totals[name][0] += per_s / rounds
            totals[name][1] += errors
    return {name: (per_s, errors) for name, (per_s, errors) in totals.items()}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's workers, a Celery worker's pool)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree = [pid]
    for child, parent in sorted(parents.items()):
        if parent in tree:
            tree.append(child)
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of ``pids`` (Linux /proc)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_per_request(stack: Stack, call: Callable[[requests.Session], bool], seconds: float,
                    threads: int) -> dict[str, float]:
    """CPU milliseconds each process of the stack spends per request of ``call``: unlike a rate, this
    hardly moves when other work shares the machine."""
    roots = {"web": stack.web, "audit": stack.audit, "watchdog": stack.watchdog}
    trees = {name: process_tree(proc.popen.pid) for name, proc in roots.items() if proc is not None}
    assert stack.redis_proc is not None
    trees["redis"] = [stack.redis_proc.pid]
    before = {name: cpu_seconds(pids) for name, pids in trees.items()}
    per_s, _ = rate(call, seconds, threads)
    time.sleep(1.0)  # the audit writer finishes the window's events
    count = max(per_s * seconds, 1)
    return {name: round((cpu_seconds(trees[name]) - before[name]) / count * 1000, 3) for name in trees}


class Heartbeats:
    """Keeps the lanes looking alive while their workers are stopped, so that admission can be timed alone."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.stop = stack, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = self.stack.redis()
        while not self.stop.is_set():
            for lane in ("qpu", "sim", "heuristic"):
                beat(client, lane, f"bench-{lane}", LaneLimits(30, 10_000, 1_000, 100_000), 2)
            self.stop.wait(1.0)

    def __enter__(self) -> "Heartbeats":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sync", type=int, default=60, help="sync requests (and in-process solves)")
    parser.add_argument("--async-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), QGATE_RATE_LIMITS="off", QGATE_MAX_ACTIVE_JOBS="100000").start()
        try:
            token = stack.token(stack.create_client("bench", ALL_SCOPES))
            problems = [tsp(20, seed) for seed in range(args.sync)]
            through_gateway(stack, token, problems[:5], 1000)  # warm the path
            local = in_process(problems, 0.9)
            remote, failures = through_gateway(stack, token, problems, 1000)
            report["sync_tsp20"] = {
                "requests": len(remote), "non_200": failures,
                "gateway_p50_ms": round(statistics.median(remote), 1),
                "gateway_p99_ms": round(percentile(remote, 0.99), 1),
                "in_process_p50_ms": round(statistics.median(local), 1),
                "in_process_p99_ms": round(percentile(local, 0.99), 1),
                "overhead_p50_ms": round(statistics.median(remote) - statistics.median(local), 1),
            }
            small = {"problem": tsp(5, 0)}
            solve_headers = stack.headers(token, 60_000)

            def submit(session: requests.Session) -> bool:
                return session.post(stack.url + "/api/v1/quantum/solve", json=small, headers=solve_headers,
                                    timeout=30).status_code == 202

            def healthz(session: requests.Session) -> bool:
                return session.get(stack.url + "/healthz", timeout=30).status_code == 200

            def measured(what: str) -> dict[str, Any]:
                rates = interleaved({"healthz": healthz, "submit": submit}, args.async_seconds, args.threads)
                (trivial_rps, _), (submit_rps, submit_errors) = rates["healthz"], rates["submit"]
                return {"measures": what, "threads": args.threads, "seconds_each": args.async_seconds,
                        "submits_per_s": round(submit_rps, 1), "submit_errors": submit_errors,
                        "healthz_per_s": round(trivial_rps, 1), "ratio": round(submit_rps / trivial_rps, 3)}

            report["async_submit_with_workers"] = measured("the whole system: lane workers run every job")
            with Heartbeats(stack):
                for lane in ("qpu", "sim", "heuristic"):
                    stack.stop_worker(lane)
                admission = measured("admission alone: gunicorn, Redis and the audit writer")
                admission["cpu_ms_per_request"] = {"healthz": cpu_per_request(stack, healthz, 4, args.threads),
                                                   "submit": cpu_per_request(stack, submit, 4, args.threads)}
            admission.update(target_ratio=TARGET_SUBMIT_RATIO, meets_target=admission["ratio"] >= TARGET_SUBMIT_RATIO)
            report["async_submit"] = admission
        finally:
            stack.stop()
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    admission, whole = report["async_submit"], report["async_submit_with_workers"]
    print(f"async submits: {admission['submits_per_s']}/s against GET /healthz {admission['healthz_per_s']}/s = "
          f"{admission['ratio']:.2f} (target >= {TARGET_SUBMIT_RATIO:.2f}: "
          f"{'met' if admission['meets_target'] else 'NOT met'}); with the lane workers running the jobs: "
          f"{whole['ratio']:.2f}")


if __name__ == "__main__":
    main()
