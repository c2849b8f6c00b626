"""Shadow comparisons: recorded once, whichever of the served job and its shadow ends last; the report."""

from __future__ import annotations

import json

import fakeredis
import pytest

from audit.channel import STREAM
from jobs import model
from jobs.store import JobStore
from orchestrator import shadow
from routing import fallback


def _job(job_id: str, lane: str, **extra: object) -> model.Job:
    job, _ = model.new_job(job_id=job_id, tenant="acme", client_id="c", kind="tsp", budget_ms=5000,
                           request={"solver": lane, "strategy": "fallback"},
                           plan=[{"lane": lane, "action": "try", "reason": "first lane"}],
                           fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.25, "basis": "x"})
    for name, value in extra.items():
        setattr(job, name, value)
    return fallback.start(job, 1000)[0]


def _finish(store: JobStore, job_id: str, cost: float | None) -> None:
    if cost is None:
        store.transition(job_id, fallback.conclude_attempt, 1, "failed", "boom", 1000)
    else:
        store.transition(job_id, fallback.conclude_attempt, 1, "succeeded", "", 1000,
                         solver={"lane": "x", "id": "s", "version": "1"}, result={"tour": [0, 1], "cost": cost})


@pytest.fixture
def store() -> JobStore:
    client = fakeredis.FakeRedis(decode_responses=True)
    store = JobStore(client, 3600, [shadow.ShadowObserver(2)])
    served = _job("a" * 32, "heuristic", shadow=[{"lane": "sim", "job_id": "b" * 32}])
    store.create(served, {}, [])
    store.create(_job("b" * 32, "sim", shadow_of="a" * 32), {}, [])
    return store


def _events(store: JobStore) -> list[dict]:
    events = [json.loads(fields["event"]) for _, fields in store.redis.xrange(STREAM)]
    return [e for e in events if e["type"] == "shadow.compared"]


@pytest.mark.parametrize("shadow_first", [True, False])
def test_the_comparison_is_recorded_once_whoever_ends_last(store: JobStore, shadow_first: bool) -> None:
    order = [("b" * 32, 11.0), ("a" * 32, 10.0)]
    for job_id, cost in (order if shadow_first else order[::-1]):
        _finish(store, job_id, cost)
    events = _events(store)
    assert len(events) == 1 and events[0]["job_id"] == "a" * 32
    data = events[0]["data"]
    assert data["versus"] == "worse" and data["gap"] == pytest.approx(0.1) and data["served_objective"] == 10.0
    assert not store.redis.exists(shadow.pending_key("a" * 32))
    (row,) = shadow.report(store.redis, 0, "acme", None)
    assert row["runs"] == 1 and row["worse_share"] == 1.0 and row["mean_gap"] == pytest.approx(0.1)
    assert row["estimated_cost_usd"] == 0.25 and shadow.report(store.redis, 0, "other", None) == []


def test_a_failed_shadow_counts_as_a_run_without_a_comparison(store: JobStore) -> None:
    _finish(store, "a" * 32, 10.0)
    _finish(store, "b" * 32, None)
    (row,) = shadow.report(store.redis, 0, None, "tsp")
    assert row["runs"] == 1 and row["feasible_share"] == 0.0 and row["compared"] == 0 and row["mean_gap"] is None


def test_summary_shares_and_quantiles() -> None:
    rows = [{"feasible": True, "versus": v, "gap": g, "time_ms": t, "cost_usd": 0.1}
            for v, g, t in [("better", -0.2, 100), ("equal", 0.0, 200), ("worse", 0.5, 300), ("worse", 0.1, 400)]]
    rows.append({"feasible": False, "versus": None, "gap": None, "time_ms": 900, "cost_usd": 0.1})
    row = shadow.summarise("qpu", "qubo", rows)
    assert row["runs"] == 5 and row["feasible_share"] == 0.8 and row["better_share"] == 0.25
    assert row["worse_share"] == 0.5 and row["mean_gap"] == pytest.approx(0.1) and row["p90_gap"] == 0.5
    assert row["p50_time_ms"] == 300 and row["p90_time_ms"] == 900 and row["estimated_cost_usd"] == 0.5
