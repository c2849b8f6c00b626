"""Job transitions and fallback decisions, as pure functions."""

from __future__ import annotations

import pytest

from jobs import model
from routing import fallback
from routing.budget import attempt_time_limit_ms

T0 = 1_000_000.0
GRACE = 2000


def _job(lanes=("qpu", "sim", "heuristic"), budget_ms=10_000, skipped=()) -> model.Job:
    plan = [{"lane": lane, "action": "try", "reason": "fallback"} for lane in lanes]
    plan += [{"lane": lane, "action": "skip", "reason": "scope"} for lane in skipped]
    job, events = model.new_job(job_id="j1", tenant="acme", client_id="c1", kind="circuit", budget_ms=budget_ms,
                                request={"seed": 3}, plan=plan, fingerprint="sha256:x",
                                cost_estimate={"usd": 0.0, "basis": ""}, now=T0)
    assert events[0][0] == "job.accepted"
    return job


def test_budget_keeps_half_for_later_lanes_and_a_margin_at_the_end() -> None:
    assert attempt_time_limit_ms(10_000, lanes_after=2) == 5000
    assert attempt_time_limit_ms(1000, lanes_after=0) == 900
    assert attempt_time_limit_ms(10_000, lanes_after=0) == 9850


def test_start_dispatches_the_first_lane_with_its_share() -> None:
    job, events = fallback.start(_job(), GRACE, now=T0)
    current = job.current
    assert current.lane == "qpu" and current.limit_ms == 5000 and current.task_id == "j1.1"
    assert current.lease_until == pytest.approx(T0 + 7.0)
    assert [e[0] for e in events] == ["attempt.enqueued"]


def test_failed_attempt_falls_back_to_the_next_lane_in_one_step() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, _ = model.start_attempt(job, 1, "w1", now=T0 + 0.1)
    job, events = fallback.conclude_attempt(job, 1, "failed", "boom", GRACE, now=T0 + 1)
    assert [e[0] for e in events] == ["attempt.failed", "job.fallback"]
    assert job.attempts[0].outcome == "failed" and job.attempts[0].duration_ms == 900.0
    assert job.current.lane == "sim" and job.current.limit_ms == 4500
    assert job.status == "running"


def test_success_ends_the_job_with_result_and_provenance() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, events = fallback.conclude_attempt(job, 1, "succeeded", "", GRACE, solver={"lane": "qpu", "id": "x"},
                                            result={"counts": {"0": 1}}, provenance={"seed": 3}, now=T0 + 1)
    assert job.status == "succeeded" and job.current is None and job.result == {"counts": {"0": 1}}
    assert [e[0] for e in events] == ["attempt.succeeded", "job.succeeded"]


def test_last_lane_failing_fails_the_job_naming_every_attempt() -> None:
    job, _ = fallback.start(_job(lanes=("sim",)), GRACE, now=T0)
    job, events = fallback.conclude_attempt(job, 1, "timeout", "soft time limit", GRACE, now=T0 + 9)
    assert job.status == "failed"
    assert "sim timeout: soft time limit" in job.error
    assert events[-1][0] == "job.failed"


def test_stale_and_duplicate_conclusions_conflict() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    with pytest.raises(model.Conflict):
        fallback.conclude_attempt(job, 2, "failed", "late", GRACE, now=T0 + 1)
    job, _ = fallback.conclude_attempt(job, 1, "succeeded", "", GRACE, now=T0 + 1)
    with pytest.raises(model.Conflict):
        fallback.conclude_attempt(job, 1, "succeeded", "", GRACE, now=T0 + 1)
    with pytest.raises(model.Conflict):
        model.cancel(job)


def test_expired_lease_times_out_the_attempt_and_moves_on() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    with pytest.raises(model.Conflict):
        fallback.expire_lease(job, GRACE, now=T0 + 1)
    job, events = fallback.expire_lease(job, GRACE, now=T0 + 7.5)
    assert job.attempts[0].outcome == "timeout" and "lease expired" in job.attempts[0].reason
    assert job.current.lane == "sim"


def test_too_little_budget_skips_to_the_safety_net() -> None:
    job, _ = fallback.start(_job(budget_ms=1000), GRACE, now=T0)
    job, events = fallback.conclude_attempt(job, 1, "failed", "x", GRACE, now=T0 + 0.85)
    assert [a.outcome for a in job.attempts] == ["failed", "skipped"]
    assert job.current.lane == "heuristic" and job.current.limit_ms == 135


def test_cancel_closes_the_attempt_in_flight() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, events = model.cancel(job, now=T0 + 1)
    assert job.status == "cancelled" and job.attempts[0].outcome == "cancelled"
    assert [e[0] for e in events] == ["attempt.cancelled", "job.cancelled"]


def test_public_view_hides_internal_fields() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    view = model.public_view(job)
    assert "tenant" not in view and "deadline" not in view and "current" not in view
    assert view["current_lane"] == "qpu" and view["status"] == "queued"


def test_lanes_that_refuse_are_recorded_in_plan_order_as_the_job_moves_past_them() -> None:
    job = _job(lanes=("sim",))
    job.plan = [model.PlanStep(lane="qpu", action="skip", reason="capacity: 30 qubits > 5"),
                model.PlanStep(lane="sim", action="try", reason="fallback"),
                model.PlanStep(lane="heuristic", action="skip",
                               reason="unsupported: the heuristic lane does not solve 'circuit'")]
    job, events = fallback.start(job, GRACE, now=T0)
    assert [(a.lane, a.outcome) for a in job.attempts] == [("qpu", "skipped")]
    assert [e[0] for e in events] == ["attempt.skipped", "attempt.enqueued"] and job.current.lane == "sim"
    job, events = fallback.conclude_attempt(job, 2, "failed", "boom", GRACE, now=T0 + 1)
    assert [(a.lane, a.outcome) for a in job.attempts] == [("qpu", "skipped"), ("sim", "failed"),
                                                                    ("heuristic", "skipped")]
    assert job.status == "failed" and "heuristic skipped: unsupported" in job.error


def test_a_worker_never_starts_an_attempt_whose_share_was_spent_in_the_queue() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, events = fallback.begin_attempt(job, 1, "w1", GRACE, now=T0 + 5.5)  # share was 5000 ms
    first = job.attempts[0]
    assert first.outcome == "timeout" and "waited 5500 ms in the qpu queue" in first.reason
    assert job.current.lane == "sim" and [e[0] for e in events] == ["attempt.timeout", "job.fallback"]


def test_a_worker_starts_an_attempt_with_time_left() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, events = fallback.begin_attempt(job, 1, "w1", GRACE, now=T0 + 4.9)
    assert job.current.started_at == T0 + 4.9 and [e[0] for e in events] == ["attempt.started"]
    with pytest.raises(model.Conflict):
        fallback.begin_attempt(job, 1, "w2", GRACE, now=T0 + 4.95)  # a redelivered copy is dropped


def test_a_stale_delivery_of_an_earlier_attempt_is_refused() -> None:
    job, _ = fallback.start(_job(), GRACE, now=T0)
    job, _ = fallback.begin_attempt(job, 1, "w1", GRACE, now=T0 + 6)
    with pytest.raises(model.Conflict):
        fallback.begin_attempt(job, 1, "w1", GRACE, now=T0 + 6.1)


def test_lease_expiry_says_where_the_time_went() -> None:
    queued, _ = fallback.start(_job(), GRACE, now=T0)
    queued, _ = fallback.expire_lease(queued, GRACE, now=T0 + 7.5)
    assert "no worker took it" in queued.attempts[0].reason
    assert "waited 7500 ms in the qpu queue" in queued.attempts[0].reason
    running, _ = fallback.start(_job(), GRACE, now=T0)
    running, _ = model.start_attempt(running, 1, "qpu@host", now=T0 + 1)
    running, _ = fallback.expire_lease(running, GRACE, now=T0 + 7.5)
    reason = running.attempts[0].reason
    assert "qpu@host started it after 1000 ms" in reason and "worker lost or stalled" in reason
