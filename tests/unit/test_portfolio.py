"""The portfolio race as pure transitions: who wins, ties, proofs, budgets, cancellation and margins."""

from __future__ import annotations

import pytest

from jobs import model
from orchestrator import portfolio

PLAN = [{"lane": "qpu", "action": "skip", "reason": "unsupported: the qpu lane does not solve 'tsp'"},
        {"lane": "sim", "action": "try", "reason": "fallback"},
        {"lane": "heuristic", "action": "try", "reason": "fallback"}]
T0 = 1_000_000.0


def race(budget_ms: int = 2000, plan: list | None = None) -> model.Job:
    job, _ = model.new_job(job_id="a" * 32, tenant="acme", client_id="c", kind="tsp", budget_ms=budget_ms,
                           request={"strategy": "portfolio", "solver": "auto"}, plan=plan or PLAN,
                           fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": "x"}, now=T0)
    job, events = portfolio.start(job, 1000, now=T0)
    return job


def lane_n(job: model.Job, lane: str) -> int:
    return next(lease.n for lease in job.racing or [] if lease.lane == lane)


def answer(cost: float, optimal: bool = False, feasible: bool | None = None) -> dict:
    result = {"tour": [0, 1, 2], "cost": cost}
    if feasible is not None:
        result["feasible"] = feasible
    return {"result": result, "solver": {"lane": "x", "id": "s", "version": "1"},
            "provenance": {"solver_details": {"optimal": optimal}}}


def test_start_races_every_planned_lane_with_the_budget_less_a_margin() -> None:
    job = race(2000)
    assert [lease.lane for lease in job.racing] == ["sim", "heuristic"]
    assert all(lease.limit_ms == 1800 for lease in job.racing)
    assert [a.outcome for a in job.attempts] == ["skipped"]  # the lane that refused the kind
    assert portfolio.lane_limit_ms(100) == 70 and portfolio.lane_limit_ms(60_000) == 59_500


def test_a_proven_optimum_ends_the_race_and_cancels_the_rest() -> None:
    job = race()
    job, _ = portfolio.begin(job, lane_n(job, "sim"), "w1", 1000, now=T0 + 0.01)
    job, events = portfolio.conclude(job, lane_n(job, "heuristic"), "succeeded", "", now=T0 + 0.2,
                                     **answer(10.0, optimal=True))
    assert job.status == "succeeded" and job.result["cost"] == 10.0 and not job.racing
    assert {a.lane: a.outcome for a in job.attempts} == {"qpu": "skipped", "heuristic": "succeeded",
                                                         "sim": "cancelled"}
    assert job.portfolio["winner"] == "heuristic" and job.portfolio["margins"]["sim"] is None
    assert [e for e, _ in events][-1] == "job.succeeded"


def test_the_best_feasible_answer_wins_and_margins_say_by_how_much() -> None:
    job = race()
    job, _ = portfolio.conclude(job, lane_n(job, "sim"), "succeeded", "", now=T0 + 0.5, **answer(12.5))
    assert job.status == "queued" and job.portfolio["best"]["lane"] == "sim"
    job, _ = portfolio.conclude(job, lane_n(job, "heuristic"), "succeeded", "", now=T0 + 1, **answer(10.0))
    assert job.status == "succeeded" and job.solver["id"] == "s" and job.result["cost"] == 10.0
    assert job.portfolio["winner"] == "heuristic" and job.portfolio["margins"] == {"qpu": None, "sim": 2.5}
    assert {a.lane: a.objective for a in job.attempts if a.outcome == "succeeded"} == {"sim": 12.5,
                                                                                       "heuristic": 10.0}


@pytest.mark.parametrize("second", [10.0, 10.0 + 1e-12])
def test_ties_go_to_the_first_to_finish(second: float) -> None:
    job = race()
    job, _ = portfolio.conclude(job, lane_n(job, "sim"), "succeeded", "", now=T0 + 0.5, **answer(10.0))
    job, _ = portfolio.conclude(job, lane_n(job, "heuristic"), "succeeded", "", now=T0 + 1, **answer(second))
    assert job.portfolio["winner"] == "sim" and job.portfolio["margins"]["heuristic"] == pytest.approx(0.0)


def test_an_infeasible_answer_never_wins_and_a_race_without_answers_fails() -> None:
    job = race()
    job, _ = portfolio.conclude(job, lane_n(job, "sim"), "succeeded", "", now=T0 + 0.5,
                                **answer(1.0, feasible=False))
    job, _ = portfolio.conclude(job, lane_n(job, "heuristic"), "timeout", "time limit", now=T0 + 2)
    assert job.status == "failed" and "sim succeeded" in job.error and "heuristic timeout" in job.error
    assert job.portfolio["winner"] is None


def test_the_second_conclusion_of_one_attempt_is_refused() -> None:
    job = race()
    n = lane_n(job, "sim")
    job, _ = portfolio.conclude(job, n, "succeeded", "", now=T0 + 0.5, **answer(3.0))
    with pytest.raises(model.Conflict):
        portfolio.conclude(job, n, "succeeded", "", now=T0 + 0.6, **answer(1.0))


def test_the_watchdog_ends_a_spent_race_with_the_best_so_far() -> None:
    job = race(2000)
    job, _ = portfolio.begin(job, lane_n(job, "heuristic"), "w", 1000, now=T0 + 0.01)
    job, _ = portfolio.conclude(job, lane_n(job, "heuristic"), "succeeded", "", now=T0 + 0.3, **answer(7.0))
    with pytest.raises(model.Conflict):
        portfolio.expire(job, 1000, now=T0 + 1.0)  # nothing due yet
    job, _ = portfolio.expire(job, 1000, now=T0 + 3.0)  # the sim worker was lost: its lease ran out
    assert job.status == "succeeded" and job.portfolio["winner"] == "heuristic"
    assert {a.lane: a.outcome for a in job.attempts}["sim"] == "timeout"


def test_an_attempt_whose_time_went_in_the_queue_is_not_started() -> None:
    job = race(1000)
    job, _ = portfolio.begin(job, lane_n(job, "sim"), "w", 1000, now=T0 + 0.95)
    assert {a.lane: a.outcome for a in job.attempts}["sim"] == "timeout" and len(job.racing) == 1


def test_cancel_closes_every_racing_attempt() -> None:
    job = race()
    job, events = model.cancel(job, now=T0 + 0.1)
    assert job.status == "cancelled" and not job.racing
    assert sorted(a.lane for a in job.attempts if a.outcome == "cancelled") == ["heuristic", "sim"]


def test_comparisons_for_the_lane_report() -> None:
    assert portfolio.compare(9.0, 10.0) == "better" and portfolio.compare(10.0, 10.0) == "equal"
    assert portfolio.compare(11.0, 10.0) == "worse" and portfolio.compare(None, 10.0) is None
    assert portfolio.relative_gap(11.0, 10.0) == pytest.approx(0.1)
    assert portfolio.objective_of({"bits": [1, 0], "energy": -3}) == -3.0
    assert portfolio.objective_of({"counts": {"00": 1}}) is None


def test_attempt_numbers_are_unique_when_lanes_are_skipped_beside_racing_ones() -> None:
    """A lane refusing the problem after two lanes were dispatched took number 1 again (the qpu's)."""
    import fakeredis

    from tests.unit.test_spend import _portfolio, _service

    job = _portfolio(_service(fakeredis.FakeRedis(decode_responses=True)))
    numbers = [a.n for a in job.attempts] + [lease.n for lease in job.racing or []]
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), (job.attempts, job.racing)


def test_a_lane_whose_breaker_is_open_is_passed_over_and_the_others_race() -> None:
    from routing.predict import Outlook

    job, _ = model.new_job(job_id="b" * 32, tenant="acme", client_id="c", kind="tsp", budget_ms=2000,
                           request={"strategy": "portfolio", "solver": "auto"}, plan=PLAN,
                           fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": "x"}, now=T0)
    blocked = "breaker: open since 2026-11-27T04:00:00Z (3 of 4 attempts failed)"
    outlooks = {"sim": Outlook("sim", blocked=blocked), "heuristic": Outlook("heuristic", run_s=0.1, samples=9)}
    job, events = portfolio.start(job, 1000, now=T0, outlooks=outlooks)
    assert [lease.lane for lease in job.racing] == ["heuristic"]
    assert [(a.lane, a.outcome, a.reason) for a in job.attempts][-1] == ("sim", "skipped", blocked)
    assert len({a.n for a in job.attempts} | {lease.n for lease in job.racing}) == 3

    every, _ = model.new_job(job_id="c" * 32, tenant="acme", client_id="c", kind="tsp", budget_ms=2000,
                             request={"strategy": "portfolio", "solver": "auto"}, plan=PLAN,
                             fingerprint="sha256:" + "0" * 64, cost_estimate={"usd": 0.0, "basis": "x"}, now=T0)
    every, _ = portfolio.start(every, 1000, now=T0, outlooks={lane: Outlook(lane, blocked=blocked)
                                                              for lane in ("sim", "heuristic")})
    assert every.status == "failed" and every.racing is None
    from routing.fallback import passed_over_only
    assert passed_over_only(every)  # admission answers 503 with Retry-After, as for a fallback job
