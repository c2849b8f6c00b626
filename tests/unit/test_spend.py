"""QPU spend allowances through the real JobStore and its admission Lua (fakeredis runs the script):
the quota reason and fallback, 429 when qpu was the only lane, settle to reported shots or the estimate,
release when the attempt never ran (cancelled in the queue, expired in the queue, skipped), business units,
day/month keys that expire, and the race between the plan's look and the admission script."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from jobs import model
from jobs.spend import Allowance, SpendBook, SpendSettlement, reservation_key, usage_key, periods
from jobs.store import JobStore
from orchestrator.service import JobService, QuotaExceeded, ServiceConfig, Submission
from solvers.base import Solution
from solvers.problems import parse_problem
from tests.unit.test_orchestrator import Caller, FakeSolver, Lanes, RecordingEnqueuer, Runtime

CIRCUIT = {"kind": "circuit", "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; '
                                      'measure q -> c;', "shots": 100}
PRICE = {"qpu_price_per_task_usd": 1.0, "qpu_price_per_shot_usd": 0.031}  # 100 shots: $4.10


def _service(redis: fakeredis.FakeRedis) -> JobService:
    store = JobStore(redis, 3600, [SpendSettlement()])
    config = ServiceConfig(lease_grace_ms=1000, standard_tier_max_usd=100.0, **PRICE)
    return JobService(store, RecordingEnqueuer(), config, Lanes(), spend=SpendBook(redis))


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def _submit(service: JobService, solver: str = "auto", metadata: dict | None = None,
            scopes: frozenset[str] | None = None) -> model.Job:
    options = {"solver": solver, "metadata": metadata or {}}
    caller = Caller() if scopes is None else Caller(scopes=scopes)
    job, _ = service.submit(caller, Submission(parse_problem(CIRCUIT), 5000, options, body={"p": 1}))
    return job


def _day(redis: fakeredis.FakeRedis, scope: str = "acme") -> dict[str, int]:
    return {k: int(v) for k, v in redis.hgetall(usage_key(scope, "d", periods(time.time())["d"])).items()}


def test_a_job_that_does_not_fit_skips_qpu_with_the_reason_and_falls_back(redis) -> None:
    service = _service(redis)
    SpendBook(redis).set("acme", None, Allowance(usd_per_day=5.0))
    first = _submit(service)
    assert first.current.lane == "qpu" and _day(redis)["usd_reserved"] == 4_100_000
    second = _submit(service)
    assert second.plan[0].action == "skip"
    assert second.plan[0].reason == "quota: $0.90 of $5.00 left today, estimate $4.10"
    assert second.current.lane == "sim" and second.plan[1].reason == "first lane"
    assert _day(redis)["usd_reserved"] == 4_100_000


def test_qpu_with_no_other_lane_is_429(redis) -> None:
    service = _service(redis)
    SpendBook(redis).set("acme", None, Allowance(shots_per_month=50))
    with pytest.raises(QuotaExceeded) as refused:
        _submit(service, solver="qpu", scopes=frozenset({"solver:qpu"}))
    assert refused.value.message == "quota: 50 of 50 shots left this month, estimate 100"
    assert refused.value.retry_after_s >= 1
    assert redis.keys("qgate:job:*") == []


def test_settles_to_reported_shots_and_releases_what_never_ran(redis) -> None:
    service = _service(redis)
    SpendBook(redis).set("acme", None, Allowance(usd_per_day=50.0, shots_per_day=1000))
    solver = FakeSolver()
    solver.solve = lambda problem, **kw: Solution({"counts": {"00": 100}}, {"shots": 100, "usd": 2.5})  # type: ignore[method-assign]
    ran = _submit(service)
    service.run_attempt("qpu", ran.job_id, 1, "w1", Runtime(solver=solver))
    day = _day(redis)
    assert day["usd_reserved"] == 0 and day["usd_spent"] == 2_500_000  # the provider's figure, not the estimate
    assert day["shots_reserved"] == 0 and day["shots_spent"] == 100
    assert redis.get(reservation_key(ran.job_id)) is None

    cancelled = _submit(service)
    assert _day(redis)["shots_reserved"] == 100
    service.cancel("acme", cancelled.job_id)
    assert _day(redis)["shots_reserved"] == 0 and _day(redis)["shots_spent"] == 100

    expired = _submit(service)
    service.expire_leases(now=time.time() + 60)
    day = _day(redis)
    assert day["shots_reserved"] == 0 and day["shots_spent"] == 100 and day["usd_spent"] == 2_500_000

    failed = _submit(service)  # ran and failed with no usage reported: the estimate is spent
    service.run_attempt("qpu", failed.job_id, 1, "w1", Runtime(solver=FakeSolver("raise")))
    assert _day(redis)["shots_spent"] == 200 and _day(redis)["usd_spent"] == 6_600_000


def test_business_unit_and_tenant_allowances_both_hold(redis) -> None:
    service = _service(redis)
    book = SpendBook(redis)
    book.set("acme", None, Allowance(usd_per_day=100.0, usd_per_month=1000.0))
    book.set("acme", "logistics", Allowance(usd_per_day=5.0))
    assert _submit(service, metadata={"business_unit": "logistics"}).current.lane == "qpu"
    skipped = _submit(service, metadata={"business_unit": "logistics"})
    assert skipped.plan[0].reason == "quota: $0.90 of $5.00 left today for logistics, estimate $4.10"
    assert _submit(service, metadata={"business_unit": "retail"}).current.lane == "qpu"
    assert _day(redis)["usd_reserved"] == 8_200_000
    assert 0 < redis.ttl(usage_key("acme", "d", periods(time.time())["d"])) <= 3 * 86400
    assert 0 < redis.ttl(usage_key("acme", "m", periods(time.time())["m"])) <= 40 * 86400


def test_a_reservation_raced_past_is_replanned_without_qpu(redis) -> None:
    service = _service(redis)
    book = SpendBook(redis)
    book.set("acme", None, Allowance(usd_per_day=5.0))
    real_shortfall = book.shortfall
    service.spend.shortfall = lambda guards: None  # the plan looked before another submit reserved
    redis.hincrby(usage_key("acme", "d", periods(time.time())["d"]), "usd_reserved", 2_000_000)
    job = _submit(service)
    assert job.current.lane == "sim"
    assert job.plan[0].reason == "quota: $3.00 of $5.00 left today, estimate $4.10"
    assert _day(redis)["usd_reserved"] == 2_000_000
    service.spend.shortfall = real_shortfall


def test_policy_data_allowances_and_cli_override(redis) -> None:
    tenants = {"acme": {"qpu_spend": {"usd_per_day": 3.0, "shots_per_day": 500,
                                      "business_units": {"ops": {"shots_per_month": 10}}}}}
    book = SpendBook(redis, lambda: tenants)
    assert book.allowances("acme") == {"acme": Allowance(usd_per_day=3.0, shots_per_day=500),
                                       "acme/ops": Allowance(shots_per_month=10)}
    book.set("acme", None, Allowance(usd_per_day=9.0))
    book._cached = None
    assert book.allowances("acme")["acme"] == Allowance(usd_per_day=9.0, shots_per_day=500)
    with pytest.raises(ValueError):
        SpendBook(redis, lambda: {"t": {"qpu_spend": {"usd_per_week": 1}}}).policy_allowances()
    rows = book.report("acme")
    assert {(r["business_unit"], r["unit"], r["window"]) for r in rows} == {
        (None, "usd", "day"), (None, "shots", "day"), ("ops", "shots", "month")}
    assert json.loads(redis.hget("qgate:spend:limits", "acme")) == {"usd_per_day": 9.0}


def _portfolio(service: JobService) -> model.Job:
    options = {"solver": "auto", "metadata": {}, "strategy": "portfolio"}
    job, _ = service.submit(Caller(), Submission(parse_problem(CIRCUIT), 5000, options, body={"p": 2}))
    return job


def test_a_portfolios_qpu_attempt_reserves_and_settles_like_any_other(redis) -> None:
    """A portfolio races qpu beside the other lanes: its qpu attempt must reserve the allowance in the
    creating script (or skip qpu with the quota reason), and settle or release when it ends."""
    service = _service(redis)
    SpendBook(redis).set("acme", None, Allowance(usd_per_day=5.0))
    first = _portfolio(service)
    assert any(lease.lane == "qpu" for lease in first.racing or []), first
    assert _day(redis)["usd_reserved"] == 4_100_000
    second = _portfolio(service)
    assert not any(lease.lane == "qpu" for lease in second.racing or [])
    assert second.plan[0].reason == "quota: $0.90 of $5.00 left today, estimate $4.10"
    qpu = next(lease for lease in first.racing or [] if lease.lane == "qpu")
    service.cancel("acme", first.job_id)  # never started: released
    assert _day(redis)["usd_reserved"] == 0 and _day(redis).get("usd_spent", 0) == 0
    assert redis.get(reservation_key(first.job_id)) is None and qpu.n >= 1

    third = _portfolio(service)
    lease = next(lease for lease in third.racing or [] if lease.lane == "qpu")
    service.run_attempt("qpu", third.job_id, lease.n, "w1", Runtime())
    day = _day(redis)
    assert day["usd_reserved"] == 0 and day["usd_spent"] == 4_100_000  # ran: the estimate is spent
