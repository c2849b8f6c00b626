"""The rate limits' and the policy engine's cost on the submit path, as ratios against the same path
without them, side by side.

One Redis and one heuristic worker; three gunicorn ingresses on them, identical but for QGATE_RATE_LIMITS
(on with limits high enough never to refuse, or off) and QGATE_POLICY (the Rego policy, or the built-in
rules): ``on`` has both, ``limits`` only the rate limits, ``off`` neither. Rounds alternate between them
so that the machine's noise falls on all alike:

1. Latency: p50/p99 of single async submits (202) from one client, taking turns between the sides
   (`bench.sides`), each side against ``off``.
2. Throughput: submits per second from ``--threads`` clients, each side against ``off``.
3. In-process: one admitted request's limiter work (two moving-window spends and two window reads, four
   Lua calls) against a Redis PING on the same connection pool; one policy evaluation, compiled bundle,
   uncached and from the decision cache.

Usage: python -m bench.ratelimit [--submits N] [--seconds S] [--threads T] [--rounds R]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.sides import measure_sides, side_arguments
from jobs.connection import connect
from policy.engine import DEFAULT_DATA, DEFAULT_POLICY, PolicyBundle
from ratelimit.limiter import Limiter
from routing.policy import policy_input
from ratelimit.policy import RatePolicy
from tests.integration.stack import BIN, ROOT, Process, Stack, free_port, wait_for

HIGH = "100000/minute"  # never reached here: every request pays the whole admission path
LIMITS_ON = {"QGATE_RATE_SOLVE_PER_TENANT": HIGH, "QGATE_RATE_SOLVE_PER_CLIENT": HIGH,
             "QGATE_RATE_READ_PER_TENANT": HIGH, "QGATE_RATE_READ_PER_CLIENT": HIGH,
             "QGATE_MAX_ACTIVE_JOBS": "1000000",
             # the queue behind one heuristic worker only grows here: without this, admission by prediction
             # refuses (503) more and more of whichever side runs later, and a refusal is cheaper than a submit
             "QGATE_PREDICTIVE": "off", "QGATE_BREAKERS": "off"}
SMALL = {"problem": {"kind": "tsp", "locations": [[0, 0], [3, 4], [6, 0], [3, -4]]}}


def second_web(stack: Stack, **env: str) -> tuple[Process, str]:
    """Another gunicorn ingress on the stack's Redis, with ``env`` on top of the stack's environment."""
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--threads", "16", "wsgi:app"]
    proc = Process("web-off", argv, {**stack.env, **env}, stack.logs)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.alive(), proc.tail()
        try:
            return requests.get(url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False
    wait_for(answers, 60, "the second gunicorn")
    return proc, url


def submit_latencies(url: str, headers: dict[str, str], count: int) -> tuple[list[float], int]:
    session = requests.Session()
    times, errors = [], 0
    for _ in range(count):
        started = time.perf_counter()
        reply = session.post(url + "/api/v1/quantum/solve", json=SMALL, headers=headers, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        errors += reply.status_code != 202
    return times, errors


def limiter_cost(redis_url: str, calls: int) -> dict[str, float]:
    """Microseconds per admitted request's limiter work, and per PING, on one connection pool."""
    client = connect(redis_url)
    limiter = Limiter.on_redis(redis_url, client.connection_pool)
    limits = RatePolicy.build({"solve_per_tenant": HIGH, "solve_per_client": HIGH, "read_per_tenant": HIGH,
                               "read_per_client": HIGH}).limits("solve", "bench-inproc", "qc_bench")
    for _ in range(50):
        limiter.acquire(limits)
        client.ping()
    out: dict[str, list[float]] = {"acquire": [], "ping": []}
    for _ in range(calls):
        started = time.perf_counter()
        limiter.acquire(limits)
        out["acquire"].append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        client.ping()
        out["ping"].append((time.perf_counter() - started) * 1e6)
    acquire, ping = statistics.median(out["acquire"]), statistics.median(out["ping"])
    return {"acquire_p50_us": round(acquire, 1), "ping_p50_us": round(ping, 1),
            "acquire_over_ping": round(acquire / ping, 2)}


def policy_cost(calls: int) -> dict[str, float]:
    """Microseconds per policy evaluation with the prebuilt bundle: distinct inputs, then repeated ones."""
    bundle = PolicyBundle.load(DEFAULT_POLICY, DEFAULT_DATA)

    def document(i: int) -> dict[str, Any]:
        return policy_input(tenant=f"t{i}", scopes=frozenset({"quantum:solve", "solver:sim", "solver:heuristic"}),
                            solver="auto", cost_tier="standard", metadata={"region": "eu"},
                            lane_cost_usd={"qpu": 0.0}, qpu_provider="emulated", qpu_region="local",
                            standard_tier_max_usd=0.0)
    inputs = [document(i) for i in range(calls)]
    started = time.perf_counter()
    for doc in inputs:
        bundle.evaluate(doc)
    uncached = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for doc in inputs:
        bundle.evaluate(doc)
    cached = (time.perf_counter() - started) / calls * 1e6
    return {"evaluate_uncached_us": round(uncached, 1), "evaluate_cached_us": round(cached, 1),
            **planning_cost(calls)}


def planning_cost(calls: int) -> dict[str, float]:
    """Microseconds of a submit's planning work (the request's authorisation and the lane plan) with the
    policy in force against the built-in rules, in process on fakeredis: what the policy adds to a submit."""
    import fakeredis

    from jobs.store import JobStore
    from orchestrator.service import JobService, ServiceConfig, Submission
    from policy.source import PolicySource
    from routing.plan import LaneStatus
    from solvers.base import LaneLimits
    from solvers.problems import parse_problem

    class Caller:
        tenant, client_id = "bench", "qc_bench"
        scopes = frozenset({"quantum:solve", "solver:heuristic"})

    class Lanes:
        def statuses(self) -> dict[str, LaneStatus]:
            return {lane: LaneStatus(True, LaneLimits(max_qubits=24)) for lane in ("qpu", "sim", "heuristic")}

    redis = fakeredis.FakeRedis(decode_responses=True)
    submission = Submission(parse_problem(SMALL["problem"]), 60_000, {"solver": "auto", "cost_tier": "standard",
                                                                      "metadata": {}}, body=SMALL)
    out = {}
    for name, policy in (("builtin", None), ("policy", PolicySource(DEFAULT_POLICY, DEFAULT_DATA))):
        service = JobService(JobStore(redis, 3600), None, ServiceConfig(), Lanes(), policy=policy)  # type: ignore[arg-type]
        for _ in range(100):
            service.authorize(Caller(), submission)
            service.plan(Caller(), submission)
        started = time.perf_counter()
        for _ in range(calls):
            service.authorize(Caller(), submission)
            service.plan(Caller(), submission)
        out[f"planning_{name}_us"] = round((time.perf_counter() - started) / calls * 1e6, 1)
    return out


def main() -> None:
    args = side_arguments().parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), **LIMITS_ON)
        extras: list[Process] = []
        try:
            stack.start_redis()
            stack.start_worker("heuristic")
            stack.start_web()
            off_web, off_url = second_web(stack, QGATE_RATE_LIMITS="off", QGATE_POLICY="off")
            extras.append(off_web)
            limits_web, limits_url = second_web(stack, QGATE_POLICY="off")
            extras.append(limits_web)
            on_web, on_url = second_web(stack)  # the three sides alike: each its own second_web
            extras.append(on_web)
            token = stack.token(stack.create_client("bench", "quantum:solve solver:heuristic"))
            headers = stack.headers(token, 60_000)
            sides = {"on": on_url, "limits": limits_url, "off": off_url}
            for url in sides.values():
                submit_latencies(url, headers, 20)  # warm both
            figures = measure_sides(sides, headers, SMALL, submits=args.submits, seconds=args.seconds,
                                    threads=args.threads, rounds=args.rounds)
            p50 = {side: figures.p50(side) for side in sides}
            rps = {side: figures.per_s(side) for side in sides}
            report["submit_latency"] = {
                "submits_per_side": len(figures.latencies["on"]),
                "limits_on_p50_ms": round(p50["on"], 2), "limits_off_p50_ms": round(p50["off"], 2),
                "limits_on_p99_ms": round(figures.p99("on"), 2), "limits_off_p99_ms": round(figures.p99("off"), 2),
                "p50_ratio_on_over_off": round(p50["on"] / p50["off"], 3),
                "added_p50_ms": round(p50["on"] - p50["off"], 2),
                "limits_only_p50_ms": round(p50["limits"], 2),
                "p50_ratio_limits_only_over_off": round(p50["limits"] / p50["off"], 3),
                "policy_added_p50_ms": round(p50["on"] - p50["limits"], 2)}
            report["submit_throughput"] = {
                "threads": args.threads, "seconds_per_side": args.seconds * args.rounds,
                "limits_on_per_s": round(rps["on"], 1), "limits_off_per_s": round(rps["off"], 1),
                "ratio_on_over_off": round(rps["on"] / rps["off"], 3),
                "limits_only_per_s": round(rps["limits"], 1),
                "ratio_limits_only_over_off": round(rps["limits"] / rps["off"], 3)}
            report["errors"] = figures.errors
            report["limiter_in_process"] = limiter_cost(stack.env["REDIS_URL"], 2000)
            report["policy_in_process"] = policy_cost(2000)
            report["sides"] = {"on": "rate limits and Rego policy", "limits": "rate limits, built-in rules",
                               "off": "neither"}
        finally:
            for extra in extras:
                extra.stop()
            stack.stop()
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratelimit.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
