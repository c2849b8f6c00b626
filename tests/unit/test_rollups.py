"""The history roll-ups: written with the job's own transitions (fakeredis runs the admission Lua script),
read back by computed key names, and the histogram and usage arithmetic."""

from __future__ import annotations

import time

import fakeredis
import pytest

from jobs import model
from jobs.store import JobStore
from routing import fallback
from telemetry import history, rollups
from telemetry.rollups import BOUNDS_MS, bucket_of

LANES = ("qpu", "sim", "heuristic")


def _submit(store: JobStore, *, tenant: str = "acme", kind: str = "tsp", lanes: tuple[str, ...] = ("heuristic",),
            budget_ms: int = 5000, usd: float = 0.0, metadata: dict | None = None) -> model.Job:
    plan = [{"lane": lane, "action": "try", "reason": "planned"} for lane in lanes]
    job, events = model.new_job(job_id=model.new_job_id(), tenant=tenant, client_id="c", kind=kind,
                                budget_ms=budget_ms, request={"metadata": metadata or {}}, plan=plan,
                                fingerprint="sha256:x", cost_estimate={"usd": usd, "basis": "test"})
    job, dispatched = fallback.start(job, 1000)
    assert store.create(job, {"kind": kind}, events + dispatched)
    return job


def _run(store: JobStore, job: model.Job, outcome: str = "succeeded", result: dict | None = None,
         reason: str = "ok", run_s: float = 0.0) -> model.Job:
    n = store.get(job.job_id).current.n
    store.transition(job.job_id, fallback.begin_attempt, n, "w@test", 1000)
    time.sleep(run_s)
    solver = {"lane": store.get(job.job_id).current.lane, "id": "s", "version": "1"}
    return store.transition(job.job_id, fallback.conclude_attempt, n, outcome, reason, 1000, solver=solver,
                            result=result or {"tour": [0]}, provenance={})


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), 3600)


def _now_totals(store: JobStore) -> dict[str, int]:
    now = time.time()
    return history.read_sum(store.redis, history.bucket_keys(now - 3600, now + 60, now))


def test_bucket_bounds_are_log_spaced_and_monotonic() -> None:
    assert bucket_of(0) == 0 and bucket_of(1) == 0
    assert bucket_of(1.5) == 1 and bucket_of(10) == 4 and bucket_of(10.01) == 5
    assert bucket_of(1e9) == len(BOUNDS_MS)
    for index, bound in enumerate(BOUNDS_MS):
        assert bucket_of(bound) == index
    assert all(b / a == pytest.approx(10 ** 0.25) for a, b in zip(BOUNDS_MS, BOUNDS_MS[1:]))


def test_quantiles_fall_inside_their_bucket() -> None:
    counts = {bucket_of(100): 50, bucket_of(1000): 45, bucket_of(10_000): 5}
    p50, p95, p99 = (history.quantile(counts, q) for q in (0.5, 0.95, 0.99))
    assert BOUNDS_MS[bucket_of(100) - 1] <= p50 <= 100
    assert BOUNDS_MS[bucket_of(1000) - 1] <= p95 <= 1000
    assert BOUNDS_MS[bucket_of(10_000) - 1] <= p99 <= 10_000
    assert history.quantile({}, 0.5) is None


def test_a_finished_job_is_counted_in_minute_and_hour_buckets_with_ttls(store: JobStore) -> None:
    _run(store, _submit(store))
    client, now = store.redis, time.time()
    minute, hour = client.hgetall(rollups.minute_key(now)), client.hgetall(rollups.hour_key(now))
    assert minute == hour
    assert minute["acc|tsp|acme"] == "1"
    assert minute["job|heuristic|tsp|succeeded|acme"] == "1"
    assert minute["att|heuristic|succeeded"] == "1"
    assert minute["slo|heuristic|in"] == "1"
    assert sum(int(v) for k, v in minute.items() if k.startswith("jd|heuristic|")) == 1
    assert 0 < client.ttl(rollups.minute_key(now)) <= rollups.MINUTE_TTL_S
    assert rollups.MINUTE_TTL_S < client.ttl(rollups.hour_key(now)) <= 14 * 86400
    assert client.lrange(rollups.recent_key(), 0, -1) == client.lrange(rollups.recent_key("acme"), 0, -1)


def test_history_days_sets_the_hour_ttl(store: JobStore) -> None:
    rollups.configure(2)
    try:
        _submit(store)
        assert 86400 < store.redis.ttl(rollups.hour_key(time.time())) <= 2 * 86400
    finally:
        rollups.configure(rollups.DEFAULT_HISTORY_DAYS)


def test_fallbacks_are_counted_by_reason_class_and_the_summary_adds_up(store: JobStore) -> None:
    for _ in range(3):
        _run(store, _submit(store, lanes=("sim", "heuristic")), "failed", reason="RuntimeError: injected 42")
    totals = _now_totals(store)
    assert totals["fb|sim|heuristic|failed"] == 3
    assert totals["fbr|RuntimeError: injected #"] == 3
    summary = history.summarize(totals, LANES)
    assert summary.lanes["sim"].attempts == {"failed": 3}
    assert summary.lanes["sim"].fallbacks_out == 3
    assert summary.fallback_classes == {"failed": 3}
    assert summary.top_reasons == [("RuntimeError: injected #", 3)]
    assert summary.accepted == 3


def test_a_job_over_its_budget_counts_against_the_slo(store: JobStore) -> None:
    _run(store, _submit(store, budget_ms=300), run_s=0.35)
    summary = history.summarize(_now_totals(store), LANES)
    assert (summary.lanes["heuristic"].within_budget, summary.lanes["heuristic"].over_budget) == (0, 1)
    assert summary.lanes["heuristic"].slo_share == 0.0
    assert summary.lanes["heuristic"].job_ms["p50"] is not None


def test_qpu_shots_and_usd_per_tenant_and_metadata(store: JobStore) -> None:
    for tenant, unit in (("acme", "east"), ("acme", "west"), ("zeta", "east")):
        job = _submit(store, tenant=tenant, kind="circuit", lanes=("qpu",), usd=0.25,
                      metadata={"business_unit": unit, "x|y": "a|b"})
        _run(store, job, result={"counts": {"00": 600, "11": 424}})
    now = time.time()
    by_tenant = {row["group"]: row for row in history.usage(store.redis, now - 3600, now + 60, "tenant")}
    assert by_tenant["acme"]["jobs"] == 2 and by_tenant["acme"]["qpu_shots"] == 2048
    assert by_tenant["acme"]["usd"] == pytest.approx(0.5) and by_tenant["zeta"]["usd"] == pytest.approx(0.25)
    by_unit = {row["group"]: row for row in history.usage(store.redis, now - 3600, now + 60,
                                                          "metadata.business_unit")}
    assert by_unit["east"]["jobs"] == 2 and by_unit["east"]["usd"] == pytest.approx(0.5)
    own = history.usage(store.redis, now - 3600, now + 60, "metadata.business_unit", tenant="zeta")
    assert [(row["group"], row["jobs"], row["qpu_shots"]) for row in own] == [("east", 1, 1024)]
    by_lane = history.usage(store.redis, now - 3600, now + 60, "lane", tenant="acme")
    assert [(row["group"], row["jobs"], row["succeeded"]) for row in by_lane] == [("qpu", 2, 2)]
    assert history.per_tenant_cost(store.redis, now - 3600, now + 60)["acme"]["usd"] == pytest.approx(0.5)


def test_readers_compute_keys_and_never_scan(store: JobStore) -> None:
    now = 1_800_000_000.0
    assert history.bucket_keys(now - 3600, now, now) == [f"qgate:hist:m:{m}" for m in
                                                        range(int((now - 3600) // 60), int(now // 60))]
    assert len(history.bucket_keys(now - 7 * 86400, now, now)) == 168
    assert all(":h:" in key for key in history.bucket_keys(now - 86400, now, now))


def test_queue_depth_samples_average(store: JobStore) -> None:
    rollups.sample_queue_depths(store.redis, {"sim": 4, "qpu": 0})
    rollups.sample_queue_depths(store.redis, {"sim": 2, "qpu": 0})
    summary = history.summarize(_now_totals(store), LANES)
    assert summary.lanes["sim"].depth_avg == 3 and summary.lanes["qpu"].depth_avg == 0


def test_a_bad_job_never_refuses_its_transition(store: JobStore) -> None:
    job = _submit(store)
    job_id = job.job_id
    broken = store.get(job_id)
    broken.created_at = "not a date"
    store.redis.set(f"qgate:job:{job_id}", broken.model_dump_json())
    assert _run(store, broken).status == "succeeded"


def test_prometheus_histograms_are_cumulative_and_fleet_wide(store: JobStore) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from telemetry.metrics import RedisCollector

    for _ in range(2):
        _run(store, _submit(store))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(store.redis, lambda _: {lane: [] for lane in LANES}))
    text = generate_latest(registry).decode()
    labels = 'kind="tsp",lane="heuristic",outcome="succeeded"'
    assert f'qgate_job_duration_seconds_count{{{labels}}} 2.0' in text
    assert 'qgate_attempt_duration_seconds_bucket{kind="tsp",lane="heuristic",le="+Inf",outcome="succeeded"} 2.0' in text
    assert 'qgate_queue_wait_seconds_bucket{kind="tsp",lane="heuristic",le="0.001",outcome="succeeded"}' in text
    assert 'qgate_jobs_budget_total{budget="met",lane="heuristic"} 2.0' in text
    buckets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('qgate_job_duration_seconds_bucket{kind="tsp",lane="heuristic",')]
    assert buckets == sorted(buckets) and len(buckets) == len(BOUNDS_MS) + 1
