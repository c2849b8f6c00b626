"""Lane telemetry in Redis (fakeredis runs the Lua): EMAs, decayed histograms, censored timeouts, and the
store writing samples in the transaction that concludes an attempt."""

from __future__ import annotations

import fakeredis
import pytest

from jobs import model
from jobs.store import JobStore
from routing import fallback
from routing.telemetry import (
    ALL_CLASSES,
    LaneTelemetry,
    Sample,
    Stats,
    TelemetryConfig,
    bucket,
    bucket_upper_s,
    problem_class,
    quantile,
    sample_of,
    telemetry_key,
)
from solvers.problems import parse_problem


def _stats(redis: fakeredis.FakeRedis, lane: str = "qpu", cls: str = "circuit:4") -> Stats:
    return Stats.of(redis.hgetall(telemetry_key(lane, cls)))


def _record(redis: fakeredis.FakeRedis, telemetry: LaneTelemetry, sample: Sample, now: float) -> None:
    pipe = redis.pipeline()  # a MULTI, as in JobStore.transition
    telemetry.record(pipe, sample, "circuit:4", now)
    pipe.execute()


def test_buckets_never_understate_and_stay_within_a_quarter() -> None:
    for seconds in (0.0005, 0.001, 0.0123, 0.5, 2.1, 41.8, 3600.0):
        upper = bucket_upper_s(bucket(seconds))
        assert upper >= seconds - 1e-12 and upper <= max(seconds, 0.001) * 1.25 + 1e-12
    assert quantile({}, 0.9) is None
    assert quantile({bucket(1.0): 9.0, bucket(10.0): 1.0}, 0.9) == pytest.approx(bucket_upper_s(bucket(1.0)))
    assert quantile({bucket(1.0): 8.9, bucket(10.0): 1.1}, 0.9) == pytest.approx(bucket_upper_s(bucket(10.0)))


def test_problem_classes_bucket_sizes_by_powers_of_two() -> None:
    tsp = parse_problem({"kind": "tsp", "locations": [[0, 0], [1, 1], [2, 0], [3, 3], [4, 1]]})
    qubo = parse_problem({"kind": "qubo", "n": 2, "terms": [[0, 1, -1.0]]})
    bell = parse_problem({"kind": "circuit", "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
                                                    "h q[0]; cx q[0],q[1]; measure q -> c;", "shots": 100})
    assert (problem_class(tsp), problem_class(qubo), problem_class(bell)) == ("tsp:8", "qubo:4", "circuit:4")


def test_emas_and_the_tail_follow_the_lane_with_a_fake_clock() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    telemetry = LaneTelemetry(TelemetryConfig(alpha=0.5))
    clock = 1_000.0
    for _ in range(4):
        clock += 1
        _record(redis, telemetry, Sample("qpu", "ok", 0.1, 1.0), clock)
    stats = _stats(redis)
    assert stats.samples == 4 and stats.run_ema_s == pytest.approx(1.0) and stats.updated_at == clock
    assert stats.run_q(0.9) == pytest.approx(bucket_upper_s(bucket(1.0)))
    _record(redis, telemetry, Sample("qpu", "ok", 0.1, 9.0), clock + 1)  # one slow sample moves the tail
    stats = _stats(redis)
    assert stats.run_ema_s == pytest.approx(5.0)
    assert stats.run_q(0.9) >= 9.0 and stats.run_q(0.5) == pytest.approx(bucket_upper_s(bucket(9.0)))
    _record(redis, telemetry, Sample("qpu", "fail", 0.2, None), clock + 2)
    stats = _stats(redis)
    assert stats.fail_rate == pytest.approx(0.5) and stats.run_ema_s == pytest.approx(5.0)
    assert stats.wait_ema_s == pytest.approx(0.15) and stats.samples == 6
    lane_wide = _stats(redis, cls=ALL_CLASSES)
    assert lane_wide.samples == 6  # the lane's own hash aggregates every class


def test_samples_of_attempt_events_censor_timeouts() -> None:
    ended = {"lane": "qpu", "queued_ms": 500.0, "duration_ms": 2000.0, "attempt": 1}
    assert sample_of(("attempt.succeeded", ended), True) == Sample("qpu", "ok", 0.5, 2.0)
    assert sample_of(("attempt.timeout", ended), True) == Sample("qpu", "timeout", 0.5, 4.0)
    assert sample_of(("attempt.failed", ended), True) == Sample("qpu", "fail", 0.5, None)
    waited = {"lane": "qpu", "queued_ms": 2000.0, "duration_ms": 2000.0, "attempt": 1}
    assert sample_of(("attempt.timeout", waited), False) == Sample("qpu", "timeout", 4.0, None)
    assert sample_of(("attempt.skipped", ended), True) is None
    assert sample_of(("attempt.cancelled", ended), True) is None


def test_the_store_records_the_sample_in_the_concluding_transaction() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = JobStore(redis, 3600, observers=[LaneTelemetry()])
    plan = [{"lane": "qpu", "action": "try", "reason": "first lane"},
            {"lane": "sim", "action": "try", "reason": "fallback"}]
    job, events = model.new_job(job_id="a" * 32, tenant="t", client_id="c", kind="circuit", budget_ms=10_000,
                                request={}, plan=plan, fingerprint="sha256:" + "0" * 64,
                                cost_estimate={"usd": 0.0, "basis": ""}, problem_class="circuit:4")
    job, dispatched = fallback.start(job, 1000)
    assert store.create(job, {"kind": "circuit"}, events + dispatched)
    assert _stats(redis).samples == 0
    store.transition(job.job_id, fallback.begin_attempt, 1, "w1", 1000)
    store.transition(job.job_id, fallback.conclude_attempt, 1, "timeout", "too slow", 1000)
    stats = _stats(redis)
    assert stats.samples == 1 and stats.timeout_rate == pytest.approx(1.0) and stats.run_q(0.9) is not None
    store.transition(job.job_id, fallback.begin_attempt, 2, "w2", 1000)
    store.transition(job.job_id, fallback.conclude_attempt, 2, "succeeded", "", 1000, result={})
    assert _stats(redis, "sim").samples == 1 and _stats(redis, "sim").fail_rate == 0.0
