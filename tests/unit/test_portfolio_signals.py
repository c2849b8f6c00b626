"""Portfolio attempts as lane evidence for the planner: telemetry samples and breaker outcomes, written by
the store's observers in the transaction that concludes them, while a race's cancelled losers count for
nothing (fakeredis runs the telemetry script; fake clock)."""

from __future__ import annotations

import fakeredis
import pytest

from jobs import model
from jobs.store import JobStore
from orchestrator import portfolio
from routing.breaker import Breaker, BreakerConfig, Breakers, breaker_key
from routing.telemetry import ALL_CLASSES, LaneTelemetry, Stats, telemetry_key

CONFIG = BreakerConfig(window=10, failure_rate=0.5, consecutive=5, cooldown_s=30, probes=2)
PLAN = [{"lane": lane, "action": "try", "reason": "first lane" if lane == "qpu" else "fallback"}
        for lane in ("qpu", "sim", "heuristic")]
T0 = 1_000_000.0
CLASS = "qubo:4"


@pytest.fixture
def store() -> JobStore:
    redis = fakeredis.FakeRedis(decode_responses=True)
    return JobStore(redis, 3600, observers=[LaneTelemetry(), Breakers(redis, CONFIG)])


def _race(store: JobStore, n: int, at: float = T0) -> tuple[str, dict[str, int]]:
    job, events = model.new_job(job_id=f"{n:032x}", tenant="t", client_id="c", kind="qubo", budget_ms=4000,
                                request={"strategy": "portfolio", "solver": "auto"}, plan=PLAN,
                                fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": ""},
                                problem_class=CLASS, now=at)
    job, dispatched = portfolio.start(job, 1000, now=at)
    assert store.create(job, {"kind": "qubo"}, events + dispatched)
    return job.job_id, {lease.lane: lease.n for lease in job.racing or []}


def _begin(store: JobStore, job_id: str, n: int, at: float) -> None:
    store.transition(job_id, portfolio.begin, n, "w", 1000, now=at)


def _answer(energy: float, optimal: bool = False) -> dict:
    return {"solver": {"lane": "x", "id": "s", "version": "1"}, "result": {"x": [1, 0], "energy": energy},
            "provenance": {"solver_details": {"optimal": optimal}}}


def _stats(store: JobStore, lane: str, cls: str = CLASS) -> Stats:
    return Stats.of(store.redis.hgetall(telemetry_key(lane, cls)))


def _breaker(store: JobStore, lane: str) -> Breaker:
    return Breaker.loads(store.redis.get(breaker_key(lane)))


def test_a_racing_attempt_is_a_sample_of_its_lane_and_the_cancelled_losers_are_none(store: JobStore) -> None:
    job_id, n = _race(store, 1)
    for lane in n:
        _begin(store, job_id, n[lane], T0 + 0.1)
    store.transition(job_id, portfolio.conclude, n["sim"], "succeeded", "", **_answer(-1.0), now=T0 + 0.6)
    # the heuristic proves the optimum: the race ends and the qpu attempt, still running, is cancelled
    job = store.transition(job_id, portfolio.conclude, n["heuristic"], "succeeded", "",
                           **_answer(-2.0, optimal=True), now=T0 + 1.1)
    assert job.status == "succeeded" and [a.outcome for a in job.attempts][-1] == "cancelled"
    sim, heuristic = _stats(store, "sim"), _stats(store, "heuristic")
    assert sim.samples == 1 and sim.run_ema_s == pytest.approx(0.5) and sim.wait_ema_s == pytest.approx(0.1)
    assert heuristic.samples == 1 and heuristic.run_ema_s == pytest.approx(1.0) and heuristic.fail_rate == 0.0
    assert _stats(store, "sim", ALL_CLASSES).samples == 1
    assert _stats(store, "qpu").samples == 0 and not store.redis.exists(telemetry_key("qpu", ALL_CLASSES))
    assert _breaker(store, "sim").window == "0" and _breaker(store, "heuristic").window == "0"
    assert _breaker(store, "qpu").window == ""  # cancelled by the race: not an outcome of the qpu lane


def test_a_lane_failing_inside_portfolios_opens_its_breaker(store: JobStore) -> None:
    for i in range(5):
        at = T0 + 10 * i
        job_id, n = _race(store, i, at)
        _begin(store, job_id, n["qpu"], at + 0.1)
        store.transition(job_id, portfolio.conclude, n["qpu"], "failed", "QpuError: boom", now=at + 0.2)
    breaker = _breaker(store, "qpu")
    assert breaker.state == "open" and breaker.reason == "5 attempts in a row failed"
    assert _stats(store, "qpu").fail_rate > 0.6 and _stats(store, "qpu").samples == 5
    assert _breaker(store, "sim").window == "" and _stats(store, "sim").samples == 0  # still racing


def test_losing_every_race_leaves_a_lane_closed_and_without_samples(store: JobStore) -> None:
    for i in range(12):
        at = T0 + 10 * i
        job_id, n = _race(store, i, at)
        for lane in n:
            _begin(store, job_id, n[lane], at + 0.1)
        store.transition(job_id, portfolio.conclude, n["heuristic"], "succeeded", "",
                         **_answer(-2.0, optimal=True), now=at + 0.3)
    assert _breaker(store, "qpu") == Breaker() and _breaker(store, "sim") == Breaker()
    heuristic = _stats(store, "heuristic")
    assert _stats(store, "qpu").samples == 0 and heuristic.samples == 12
    assert heuristic.run_ema_s == pytest.approx(0.2) and heuristic.run_q(0.9) >= 0.2


def test_the_watchdog_expiring_several_racing_leases_records_a_timeout_for_each_lane(store: JobStore) -> None:
    job_id, n = _race(store, 1)
    _begin(store, job_id, n["qpu"], T0 + 0.1)
    _begin(store, job_id, n["sim"], T0 + 0.2)  # the heuristic attempt never left its queue
    job = store.transition(job_id, portfolio.expire, 1000, now=T0 + 10)
    assert job.status == "failed" and {a.outcome for a in job.attempts} == {"timeout"}
    for lane in ("qpu", "sim", "heuristic"):
        assert _breaker(store, lane).window == "1", lane
        assert _stats(store, lane).timeout_rate == 1.0, lane
    assert _stats(store, "qpu").run_ema_s is not None and _stats(store, "heuristic").run_ema_s is None
