"""The orchestrator with lane signals on fakeredis: predicted skips at submission and at fallback,
admission refused when no lane can finish, breakers in the plan, a waiting job's queue position."""

from __future__ import annotations

import time

import fakeredis
import pytest

from jobs.store import JobStore
from orchestrator.service import JobService, LanesPredictedBusy, ServiceConfig, Submission, TenantShareFull
from routing.breaker import Breaker, breaker_key
from routing.predict import PredictConfig
from routing.signals import LaneSignals
from routing.telemetry import Sample
from solvers.problems import parse_problem
from tests.unit.test_orchestrator import Caller, Lanes, RecordingEnqueuer, Runtime

QUBO = {"kind": "qubo", "n": 2, "terms": [[0, 1, -1.0], [0, 0, 0.5]]}
BELL = {"kind": "circuit", "shots": 100, "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
                                                 "h q[0]; cx q[0],q[1]; measure q -> c;"}
TSP = {"kind": "tsp", "locations": [[0, 0], [3, 4], [6, 0]]}


def _service(config: PredictConfig = PredictConfig()) -> JobService:
    redis = fakeredis.FakeRedis(decode_responses=True)
    signals = LaneSignals(redis, config)
    store = JobStore(redis, 3600, signals.observers())
    return JobService(store, RecordingEnqueuer(), ServiceConfig(lease_grace_ms=1000), Lanes(), signals=signals)


def _submit(service: JobService, problem: dict = BELL, solver: str = "auto", budget_ms: int = 5000):
    submission = Submission(parse_problem(problem), budget_ms, {"solver": solver, "seed": 1})
    return service.submit(Caller(), submission)[0]


def _slow(service: JobService, lane: str, run_s: float, cls: str = "circuit:4", n: int = 3, wait_s: float = 0.0) -> None:
    redis = service.store.redis
    for _ in range(n):
        pipe = redis.pipeline()
        service.signals.telemetry.record(pipe, Sample(lane, "ok", wait_s, run_s), cls, 1e12)
        pipe.execute()


def test_a_slow_qpu_is_passed_over_at_submission_and_the_next_lane_gets_the_budget() -> None:
    service = _service()
    _slow(service, "qpu", 8.0)
    job = _submit(service)
    assert job.attempts[0].lane == "qpu" and job.attempts[0].reason.startswith("predicted: qpu queue wait p90")
    assert "+ run 9.4 s > share 2.5 s" in job.attempts[0].reason
    assert job.current is not None and job.current.lane == "sim"
    assert service.enqueuer.sent == [(job.job_id, 2, "sim")]
    assert [d["action"] for d in job.decisions] == ["skip", "dispatch"]


def test_reactive_mode_keeps_todays_plan() -> None:
    service = _service(PredictConfig(predictive=False, breakers=False))
    _slow(service, "qpu", 8.0)
    job = _submit(service)
    assert job.current is not None and job.current.lane == "qpu" and 2490 <= job.current.limit_ms <= 2500


def test_fallback_decides_again_with_fresh_figures() -> None:
    service = _service()
    job = _submit(service, QUBO, solver="sim")
    assert job.current is not None and job.current.lane == "sim"  # no samples yet: today's plan
    _slow(service, "heuristic", 9.0, cls="qubo:4")  # the heuristic lane turns slow while sim runs
    service.run_attempt("sim", job.job_id, 1, "w", Runtime(fault=True))
    job = service.store.get(job.job_id)
    assert [(a.lane, a.outcome) for a in job.attempts] == [("sim", "failed"), ("heuristic", "skipped")]
    assert job.attempts[1].reason.startswith("predicted: heuristic queue wait p90 0.0 s (0 ahead) + run 9.4 s")
    assert job.status == "failed" and [d["action"] for d in job.decisions] == ["dispatch", "skip"]


def test_admission_refuses_when_no_lane_can_finish_and_says_when_to_retry() -> None:
    service = _service()
    _slow(service, "heuristic", 0.5, cls="tsp:4", wait_s=12.0)
    with pytest.raises(LanesPredictedBusy) as refused:
        _submit(service, TSP, solver="heuristic", budget_ms=3000)
    assert refused.value.reasons[0]["loc"] == ["plan", "heuristic"]
    assert refused.value.reasons[0]["msg"].startswith("predicted: heuristic queue wait p90 14.7 s")
    assert refused.value.retry_after_s == 15
    assert service.store.redis.keys("qgate:job:*") == []  # nothing stored, nothing queued
    assert service.enqueuer.sent == []
    assert _submit(service, TSP, solver="heuristic", budget_ms=30_000).current is not None


def test_an_open_breaker_is_passed_over_with_its_reason() -> None:
    service = _service()
    redis = service.store.redis
    redis.set(breaker_key("qpu"), Breaker(state="open", since=time.time(), reason="7 of the last 10 attempts failed").dumps())
    job = _submit(service)
    assert job.attempts[0].reason.startswith("breaker: open since ")
    assert job.attempts[0].reason.endswith("(7 of the last 10 attempts failed)")
    assert job.current is not None and job.current.lane == "sim"


def test_a_waiting_job_sees_its_position_fall_as_jobs_ahead_start() -> None:
    service = _service()
    jobs = [_submit(service, TSP, solver="heuristic") for _ in range(3)]
    last = jobs[-1]
    queue = service.queue_of(service.store.get(last.job_id))
    assert queue is not None and (queue["lane"], queue["position"], queue["ahead"]) == ("heuristic", 3, 2)
    assert queue["basis"].startswith("cold start") and queue["predicted_finish_at"] > queue["predicted_start_at"]
    service.run_attempt("heuristic", jobs[0].job_id, 1, "w", Runtime())
    queue = service.queue_of(service.store.get(last.job_id))
    assert (queue["position"], queue["ahead"]) == (2, 1)
    assert "mean run" in queue["basis"]  # a sample now exists
    service.run_attempt("heuristic", last.job_id, 1, "w", Runtime())
    assert service.queue_of(service.store.get(last.job_id)) is None
    assert service.store.redis.zcard("qgate:lane:heuristic:waiting") == 1


def test_stale_figures_let_one_job_at_a_time_through_to_refresh_them() -> None:
    service = _service(PredictConfig(telemetry_stale_s=60))
    redis = service.store.redis
    for _ in range(3):
        pipe = redis.pipeline()
        service.signals.telemetry.record(pipe, Sample("qpu", "ok", 0.0, 8.0), "circuit:4", 1000.0)
        pipe.execute()
    fresh = service.signals.outlooks(["qpu"], "circuit:4", "job-a", now=1030.0)["qpu"]
    assert fresh.need_s is not None and fresh.basis.startswith("telemetry")
    probe = service.signals.outlooks(["qpu"], "circuit:4", "job-a", now=1100.0)["qpu"]
    assert probe.need_s is None and probe.basis.startswith("probe: figures 100 s old")
    again = service.signals.outlooks(["qpu"], "circuit:4", "job-a", now=1100.5)["qpu"]
    assert again.need_s is None  # the same job, planning again (a retried transaction), keeps its probe
    other = service.signals.outlooks(["qpu"], "circuit:4", "job-b", now=1101.0)["qpu"]
    assert other.need_s is not None  # the probe is taken: the others still plan on the old figures


def _submit_as(service: JobService, tenant: str, budget_ms: int):
    submission = Submission(parse_problem(TSP), budget_ms, {"solver": "heuristic", "seed": 1})
    return service.submit(Caller(tenant=tenant), submission)[0]


@pytest.mark.parametrize("mine, others, refused_with", [
    (3, 0, TenantShareFull), (2, 2, TenantShareFull), (1, 3, LanesPredictedBusy), (0, 4, LanesPredictedBusy),
])
def test_a_queue_full_of_the_tenants_own_jobs_is_429_and_anyone_elses_503(mine: int, others: int,
                                                                         refused_with: type) -> None:
    """Jobs waiting on the heuristic lane (accepted with long budgets), then the lane's figures turn slow:
    a short-budget job is refused, and whose jobs fill the queue decides how (share 0.5)."""
    service = _service()
    for _ in range(mine):
        _submit_as(service, "acme", 60_000)
    for _ in range(others):
        _submit_as(service, "globex", 60_000)
    _slow(service, "heuristic", 0.5, cls="tsp:4", wait_s=12.0)
    with pytest.raises(LanesPredictedBusy if refused_with is LanesPredictedBusy else TenantShareFull) as refused:
        _submit_as(service, "acme", 3000)
    assert type(refused.value) is refused_with
    assert refused.value.retry_after_s and refused.value.reasons[0]["loc"] == ["plan", "heuristic"]
    if refused_with is TenantShareFull:
        assert refused.value.message.startswith("quota: your own queued jobs fill the lanes this job needs")
        assert f"{mine} of the {mine + others} jobs waiting on the heuristic lane are yours" in refused.value.message


def test_the_tenant_waiting_sets_follow_the_jobs() -> None:
    service = _service()
    redis = service.store.redis
    job = _submit_as(service, "acme", 60_000)
    assert redis.zrange("qgate:lane:heuristic:waiting:t:acme", 0, -1) == [job.job_id]
    service.cancel("acme", job.job_id)
    assert redis.zcard("qgate:lane:heuristic:waiting:t:acme") == 0 and redis.zcard("qgate:lane:heuristic:waiting") == 0
