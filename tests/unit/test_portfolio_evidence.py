"""Portfolio races as lane-report evidence: every finished attempt but the winner's is a comparison with
the served answer, recorded once in the transaction that ends the job, and the report says which rows
came from shadow runs and which from portfolios (fakeredis, fake clock)."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from audit.channel import STREAM
from jobs import model
from jobs.store import JobStore
from orchestrator import portfolio, shadow
from orchestrator.evidence import PortfolioEvidence
from routing import fallback

PLAN = [{"lane": lane, "action": "try", "reason": "first lane" if lane == "qpu" else "fallback"}
        for lane in ("qpu", "sim", "heuristic")]
COSTS = {"qpu": 0.3, "sim": 0.0, "heuristic": 0.0}
T0 = 1_800_000_000.0


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), 3600,
                    [shadow.ShadowObserver(2), PortfolioEvidence(2)])


def _race(store: JobStore, job_id: str = "a" * 32, plan: list | None = None) -> dict[str, int]:
    job, events = model.new_job(job_id=job_id, tenant="acme", client_id="c", kind="qubo", budget_ms=4000,
                                request={"strategy": "portfolio", "solver": "auto"}, plan=plan or PLAN,
                                fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.3, "basis": "x"},
                                now=T0)
    job, dispatched = portfolio.start(job, 1000, now=T0, lane_cost_usd=COSTS)
    assert store.create(job, {"kind": "qubo"}, events + dispatched)
    for lease in job.racing or []:
        store.transition(job_id, portfolio.begin, lease.n, "w", 1000, now=T0 + 0.1)
    return {lease.lane: lease.n for lease in job.racing or []}


def _conclude(store: JobStore, n: int, energy: float | None, at: float, *, feasible: bool = True,
              optimal: bool = False, job_id: str = "a" * 32, outcome: str | None = None) -> model.Job:
    if energy is None:
        return store.transition(job_id, portfolio.conclude, n, outcome or "failed", "boom", now=at)
    result = {"x": [1, 0], "energy": energy, **({} if feasible else {"feasible": False})}
    return store.transition(job_id, portfolio.conclude, n, "succeeded", "",
                            solver={"lane": "x", "id": "s", "version": "1"}, result=result,
                            provenance={"solver_details": {"optimal": optimal}}, now=at)


def _audited(store: JobStore) -> list[dict]:
    events = [json.loads(fields["event"]) for _, fields in store.redis.xrange(STREAM)]
    return [e for e in events if e["type"] == "portfolio.compared"]


def _rows(store: JobStore, **kw: object) -> dict[str, dict]:
    now = time.time()  # the store files a record under the day it is written
    return {row["lane"]: row for row in shadow.report(store.redis, now - 86400, "acme", None, now=now, **kw)}


def test_each_finished_loser_is_compared_with_the_winner_and_the_cancelled_are_not(store: JobStore) -> None:
    n = _race(store)
    _conclude(store, n["qpu"], -8.0, T0 + 0.5)  # worse than the winner, by 20 %
    _conclude(store, n["sim"], -10.0, T0 + 0.9)  # the winner
    assert _rows(store) == {}  # the race has not ended: nothing is known yet
    job = store.transition("a" * 32, portfolio.expire, 1000, now=T0 + 4.0)  # the heuristic is cancelled
    assert job.status == "succeeded" and job.solver["lane"] == "x"
    rows = _rows(store)
    assert set(rows) == {"qpu"}  # the winner is the served answer; the cancelled heuristic never finished
    qpu = rows["qpu"]
    assert qpu["runs"] == 1 and qpu["portfolio_runs"] == 1 and qpu["shadow_runs"] == 0
    assert qpu["worse_share"] == 1.0 and qpu["mean_gap"] == pytest.approx(0.2) and qpu["feasible_share"] == 1.0
    assert qpu["p50_time_ms"] == pytest.approx(400.0) and qpu["estimated_cost_usd"] == 0.3
    (event,) = _audited(store)
    (compared,) = event["data"]["comparisons"]
    assert compared["served_lane"] == "sim" and compared["served_objective"] == -10.0
    assert compared["versus"] == "worse" and event["job_id"] == "a" * 32


def test_failed_timed_out_and_infeasible_attempts_are_runs_without_a_comparison(store: JobStore) -> None:
    n = _race(store)
    _conclude(store, n["qpu"], None, T0 + 0.5)
    _conclude(store, n["sim"], -12.0, T0 + 0.6, feasible=False)
    _conclude(store, n["heuristic"], -10.0, T0 + 0.9)
    rows = _rows(store)
    assert rows["qpu"]["runs"] == 1 and rows["qpu"]["feasible_share"] == 0.0 and rows["qpu"]["compared"] == 0
    assert rows["sim"]["runs"] == 1 and rows["sim"]["feasible_share"] == 0.0 and rows["sim"]["mean_gap"] is None
    assert "heuristic" not in rows


def test_a_race_without_a_winner_still_records_its_runs(store: JobStore) -> None:
    n = _race(store)
    _conclude(store, n["qpu"], None, T0 + 0.5)
    _conclude(store, n["sim"], None, T0 + 0.6, outcome="timeout")
    job = _conclude(store, n["heuristic"], None, T0 + 0.7)
    assert job.status == "failed"
    assert {lane: row["runs"] for lane, row in _rows(store).items()} == {"qpu": 1, "sim": 1, "heuristic": 1}


def test_a_retried_conclusion_records_nothing_twice(store: JobStore) -> None:
    n = _race(store)
    _conclude(store, n["qpu"], -9.0, T0 + 0.5)
    _conclude(store, n["sim"], -10.0, T0 + 0.6, optimal=True)
    with pytest.raises(model.Conflict):  # the conclusion again, as a task retried after a lost reply sends it
        _conclude(store, n["sim"], -10.0, T0 + 0.7, optimal=True)
    assert _rows(store)["qpu"]["runs"] == 1 and len(_audited(store)) == 1


def test_an_ending_transaction_that_loses_a_race_is_recorded_once_on_its_retry() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    armed = {"on": True}

    class Interleaved(PortfolioEvidence):
        """Another lane concludes between this transaction's read of the job and its MULTI."""

        def prepare(self, pipe, before, events):  # type: ignore[no-untyped-def]
            if armed["on"] and any(name == "job.succeeded" for name, _ in events):
                armed["on"] = False
                _conclude(store, n["heuristic"], -7.0, T0 + 0.55)
            return None

    store = JobStore(redis, 3600, [Interleaved(2)])
    n = _race(store)
    _conclude(store, n["qpu"], -9.0, T0 + 0.5)
    job = _conclude(store, n["sim"], -10.0, T0 + 0.6, optimal=True)  # ends the race; retried once
    assert not armed["on"] and job.status == "succeeded"
    rows = _rows(store)
    assert rows["qpu"]["runs"] == 1 and rows["heuristic"]["runs"] == 1 and "sim" not in rows
    assert rows["heuristic"]["mean_gap"] == pytest.approx(0.3) and len(_audited(store)) == 1


def test_the_report_says_where_its_evidence_came_from(store: JobStore) -> None:
    n = _race(store, plan=PLAN[1:])
    _conclude(store, n["sim"], -9.0, T0 + 0.5)
    _conclude(store, n["heuristic"], -10.0, T0 + 0.6)
    served, _ = model.new_job(job_id="c" * 32, tenant="acme", client_id="c", kind="qubo", budget_ms=5000,
                              request={"solver": "heuristic", "strategy": "fallback"},
                              plan=[{"lane": "heuristic", "action": "try", "reason": "first lane"}],
                              fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": "x"})
    served.shadow = [{"lane": "sim", "job_id": "d" * 32}]
    shadow_job, _ = model.new_job(job_id="d" * 32, tenant="acme", client_id="c", kind="qubo", budget_ms=5000,
                                  request={"solver": "sim", "strategy": "fallback"},
                                  plan=[{"lane": "sim", "action": "try", "reason": "first lane"}],
                                  fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": "x"})
    shadow_job.shadow_of = "c" * 32
    for job in (served, shadow_job):
        store.create(fallback.start(job, 1000)[0], {}, [])
    for job_id, energy in (("c" * 32, -10.0), ("d" * 32, -10.0)):
        store.transition(job_id, fallback.conclude_attempt, 1, "succeeded", "", 1000,
                         solver={"lane": "x", "id": "s", "version": "1"}, result={"x": [1], "energy": energy})
    sim = _rows(store)["sim"]
    assert (sim["runs"], sim["shadow_runs"], sim["portfolio_runs"]) == (2, 1, 1)
    assert sim["equal_share"] == 0.5 and sim["worse_share"] == 0.5
    only = _rows(store, source="shadow")["sim"]
    assert (only["runs"], only["equal_share"], only["portfolio_runs"]) == (1, 1.0, 0)
    assert _rows(store, source="portfolio")["sim"]["worse_share"] == 1.0
    assert set(shadow.REPORT_COLUMNS) == set(sim)


def test_rows_written_before_sources_were_recorded_count_as_shadow_runs() -> None:
    row = shadow.summarise("sim", "tsp", [{"feasible": True, "versus": "equal", "gap": 0.0, "time_ms": 5}])
    assert row["shadow_runs"] == 1 and row["portfolio_runs"] == 0
