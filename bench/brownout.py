"""A scripted QPU brownout against a running stack, reactive and predictive side by side.

Each mode gets a fresh stack and the same steady mixed load (circuits with ``solver: auto`` and budgets
of 2-4 s, small QUBOs with ``auto``, TSP and CVRP on the heuristic lane with budgets from 500 ms to
20 s, sync TSPs at 800 ms) while ``qgate faults`` takes the emulated QPU through four phases: normal →
slow (log-normal queue, median 10× the qpu lane's share of a circuit's budget) → failing (30 %) →
recovered. Reactive is ``QGATE_PREDICTIVE=0 QGATE_BREAKERS=0`` (today's half-of-what-is-left
fallback); predictive is the default, with the breaker's cool-down and the figures' staleness scaled to
the phase length. QPU seconds wasted count the time failed or timed-out qpu attempts held the device
(time spent waiting in our own broker queue is not QPU time). Printed side by side: accepted jobs answered within their budget, p50/p99 latency,
QPU seconds spent on attempts that did not count, fallbacks, breaker transitions, refusals at
admission, sync p99, and accepted jobs that failed for lack of time.

Usage: python -m bench.brownout [--phase-seconds 60] [--rate 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from solvers.circuits import BELL, GHZ3
from tests.integration.stack import Stack

SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic"
CIRCUIT_BUDGET_MS = 3000
MODES = {"reactive": {"QGATE_PREDICTIVE": "0", "QGATE_BREAKERS": "0"},
         "predictive": {}}  # cool-down and staleness: a third and a half of a phase (run_mode)
LACK_OF_TIME = ("budget", "waited", "lease expired", "time limit")
NEVER_STARTED = ("waited", "lease expired: waited")  # spent in our broker queue, not on the QPU


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _points(rng: random.Random, n: int) -> list[list[float]]:
    return [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(n)]


def workload(rng: random.Random) -> tuple[dict[str, Any], int]:
    """One job of the mix: its body and budget."""
    pick = rng.random()
    if pick < 0.35:
        return {"problem": {"kind": "circuit", "qasm": rng.choice([BELL, GHZ3]), "shots": 256},
                "solver": "auto"}, rng.choice([2000, 3000, 4000])
    if pick < 0.5:
        n = rng.randint(3, 6)
        terms = [[i, j, rng.uniform(-1, 1)] for i in range(n) for j in range(i, n)]
        return {"problem": {"kind": "qubo", "n": n, "terms": terms}, "solver": "auto"}, rng.choice([2000, 4000])
    if pick < 0.7:
        return {"problem": {"kind": "tsp", "locations": _points(rng, 8)}, "solver": "heuristic"}, 800
    if pick < 0.85:
        return {"problem": {"kind": "tsp", "locations": _points(rng, rng.randint(8, 20))},
                "solver": "heuristic"}, rng.choice([1500, 5000, 20_000])
    n = rng.randint(8, 15)
    cvrp = {"kind": "cvrp", "locations": _points(rng, n), "demands": [0] + [rng.randint(1, 4)] * (n - 1),
            "vehicle_capacity": 12, "num_vehicles": 5}
    return {"problem": cvrp, "solver": "heuristic"}, rng.choice([2000, 10_000, 20_000])


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_mode(name: str, env: dict[str, str], phase_s: float, rate: float, seed: int) -> dict[str, Any]:
    """One mode on a fresh stack. A phase stands for minutes of a real brownout, so the breaker's cool-down
    and the figures' staleness are scaled to it (a third and a half of a phase)."""
    timing = {"QGATE_BREAKER_COOLDOWN_S": f"{phase_s / 3:g}", "QGATE_TELEMETRY_STALE_S": f"{phase_s / 2:g}"}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), QGATE_RATE_LIMITS="off", QGATE_MAX_ACTIVE_JOBS="100000", **timing, **env).start()
        try:
            return _drive(stack, name, phase_s, rate, seed)
        finally:
            stack.stop()


def _drive(stack: Stack, name: str, phase_s: float, rate: float, seed: int) -> dict[str, Any]:
    token = stack.token(stack.create_client("bench", SCOPES))
    rng = random.Random(seed)
    share_ms = CIRCUIT_BUDGET_MS // 2
    phases = [("normal", ["clear"]), ("slow", ["set", f"qpu.delay_ms={10 * share_ms}", "qpu.delay_jitter=0.5"]),
              ("failing", ["set", "qpu.delay_ms=0", "qpu.delay_jitter=0", "qpu.fail_rate=0.3"]),
              ("recovered", ["clear"])]
    submitted: list[dict[str, Any]] = []
    lock = threading.Lock()

    def submit(body: dict[str, Any], budget_ms: int, phase: str) -> None:
        started = time.monotonic()
        try:
            reply = requests.post(stack.url + "/api/v1/quantum/solve", json=body,
                                  headers=stack.headers(token, budget_ms), timeout=budget_ms / 1000 + 30)
            status, data = reply.status_code, reply.json()
        except requests.RequestException as exc:
            status, data = 0, {"error": str(exc)}
        record = {"phase": phase, "budget_ms": budget_ms, "status": status, "sync": budget_ms <= 1000,
                  "job_id": data.get("job_id"), "http_ms": (time.monotonic() - started) * 1000}
        with lock:
            submitted.append(record)

    with ThreadPoolExecutor(max_workers=48) as pool:
        for phase, args in phases:
            done = stack.cli("faults", *args, "--by", "bench")
            assert done.returncode == 0, done.stderr
            end = time.monotonic() + phase_s
            while time.monotonic() < end:
                body, budget = workload(rng)
                pool.submit(submit, body, budget, phase)
                time.sleep(rng.expovariate(rate))
    return _report(stack, name, submitted)


def _report(stack: Stack, name: str, submitted: list[dict[str, Any]]) -> dict[str, Any]:
    redis = stack.redis()
    deadline = time.monotonic() + 60
    jobs = []
    for record in submitted:
        if not record["job_id"] or record["status"] not in (200, 202, 504):
            continue
        while True:
            raw = redis.get(f"qgate:job:{record['job_id']}")
            job = json.loads(raw) if raw else None
            if job is None or job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if job is not None:
            jobs.append((record, job))
    latencies, sync_latencies, within, wasted_qpu_s, fallbacks, lack_of_time = [], [], 0, 0.0, 0, 0
    wasted_by_phase: dict[str, float] = {}
    passed_over: dict[str, int] = {}
    for record, job in jobs:
        ended = job["status"] in ("succeeded", "failed") and job.get("finished_at")
        latency = (_ts(job["finished_at"]) - _ts(job["created_at"])) * 1000 if ended else float("inf")
        latencies.append(latency)
        if record["sync"]:
            sync_latencies.append(record["http_ms"])
        within += job["status"] == "succeeded" and latency <= job["latency_budget_ms"]
        ran = [a for a in job["attempts"] if a["outcome"] != "skipped"]
        fallbacks += max(len(ran) - 1, 0)
        wasted = sum(a["duration_ms"] for a in ran if a["lane"] == "qpu" and a["outcome"] != "succeeded"
                     and not a["reason"].startswith(NEVER_STARTED)) / 1000
        wasted_qpu_s += wasted
        wasted_by_phase[record["phase"]] = round(wasted_by_phase.get(record["phase"], 0.0) + wasted, 2)
        for attempt in job["attempts"]:
            if attempt["outcome"] == "skipped" and attempt["reason"].startswith(("predicted:", "breaker:")):
                kind = attempt["reason"].split(":")[0]
                passed_over[kind] = passed_over.get(kind, 0) + 1
        lack_of_time += job["status"] == "failed" and any(word in (job.get("error") or "") for word in LACK_OF_TIME)
    counters = redis.hgetall("qgate:metrics:counters")
    breaker = sum(int(v) for k, v in counters.items() if k.startswith("breaker|"))
    refused = sum(1 for r in submitted if r["status"] == 503)
    accepted = len(jobs)
    return {"mode": name, "submitted": len(submitted), "accepted": accepted, "refused_at_admission": refused,
            "within_budget_share": round(within / accepted, 4) if accepted else None,
            "p50_ms": round(percentile(latencies, 0.5), 1), "p99_ms": round(percentile(latencies, 0.99), 1),
            "sync_p99_ms": round(percentile(sync_latencies, 0.99), 1), "sync_jobs": len(sync_latencies),
            "qpu_seconds_wasted": round(wasted_qpu_s, 2), "fallbacks": fallbacks, "breaker_transitions": breaker,
            "failed_for_lack_of_time_share": round(lack_of_time / accepted, 4) if accepted else None,
            "qpu_wasted_by_phase": wasted_by_phase, "passed_over": passed_over}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=2.0, help="jobs per second")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    results = [run_mode(name, env, args.phase_seconds, args.rate, args.seed) for name, env in MODES.items()]
    keys = [k for k in results[0] if k not in ("mode", "qpu_wasted_by_phase", "passed_over")]
    print(f"{'':32}" + "".join(f"{r['mode']:>14}" for r in results))
    for key in keys:
        print(f"{key:32}" + "".join(f"{str(r[key]):>14}" for r in results))
    for result in results:
        print(f"{result['mode']}: QPU seconds wasted by phase {result['qpu_wasted_by_phase']}, "
              f"lanes passed over {result['passed_over']}")
    reactive, predictive = results
    if reactive["qpu_seconds_wasted"]:
        saved = 1 - predictive["qpu_seconds_wasted"] / reactive["qpu_seconds_wasted"]
        print(f"QPU seconds wasted: predictive {saved:.0%} fewer than reactive")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "brownout.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
