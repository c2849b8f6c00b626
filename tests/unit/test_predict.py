"""Predictions and budget shares from lane telemetry (pure), and next_step passing lanes over."""

from __future__ import annotations

import pytest

from jobs import model
from routing import fallback
from routing.budget import attempt_time_limit_ms
from routing.predict import Outlook, PredictConfig, drain_s, outlook, share_ms
from routing.telemetry import Stats, bucket, bucket_upper_s

CONFIG = PredictConfig()


def _stats(run_s: float, wait_s: float = 0.0, samples: int = 5, at: float = 1000.0) -> Stats:
    return Stats(samples=samples, run_ema_s=run_s, wait_ema_s=wait_s, updated_at=at,
                 run_hist={bucket(run_s): 1.0}, wait_hist={bucket(wait_s): 1.0})


def test_without_samples_the_share_is_half_of_what_is_left_and_nothing_is_skipped() -> None:
    assert share_ms(4000, None, [None, None]) == (2000, None)
    assert share_ms(4000, Outlook("qpu"), [Outlook("sim")]) == (attempt_time_limit_ms(4000, 1), None)
    assert share_ms(4000, Outlook("heuristic"), []) == (attempt_time_limit_ms(4000, 0), None)


def test_a_lane_that_cannot_finish_within_its_share_is_passed_over_with_its_figures() -> None:
    slow = Outlook("qpu", 7, wait_s=41.8, run_s=2.1, ahead=23)
    share, reason = share_ms(4800, slow, [None])
    assert share == 2400
    assert reason == "predicted: qpu queue wait p90 41.8 s (23 ahead) + run 2.1 s > share 2.4 s"


def test_shares_follow_the_predictions_when_successors_have_them() -> None:
    fast_sim = Outlook("sim", 5, wait_s=0.0, run_s=0.4)
    fast_heuristic = Outlook("heuristic", 5, wait_s=0.0, run_s=0.2)
    qpu = Outlook("qpu", 5, wait_s=0.5, run_s=2.5)  # needs 3 s: more than half of 5 s
    share, reason = share_ms(5000, qpu, [fast_sim, fast_heuristic])
    assert reason is None and share == 5000 - int(0.6 * 1000 * 1.25 + 150)
    assert share > attempt_time_limit_ms(5000, 2)
    quick = Outlook("qpu", 5, wait_s=0.0, run_s=0.5)  # needs 0.5 s: gets twice that or the half rule
    assert share_ms(5000, quick, [fast_sim, fast_heuristic]) == (2500, None)
    assert share_ms(20_000, quick, [fast_sim]) == (10_000, None)
    # a successor without samples keeps the half rule's reserve
    assert share_ms(5000, qpu, [fast_sim, None])[0] == 2500


def test_outlooks_need_enough_fresh_samples_and_see_the_queue_ahead() -> None:
    stats, lane = _stats(2.0, 0.1), _stats(1.0)
    look = outlook("qpu", stats, lane, ahead=0, workers=1, now=1001, config=CONFIG)
    assert look.run_s == pytest.approx(bucket_upper_s(bucket(2.0))) and look.basis.startswith("telemetry")
    queued = outlook("qpu", stats, lane, ahead=20, workers=2, now=1001, config=CONFIG)
    assert queued.wait_s == pytest.approx(10.0)  # 20 ahead × 1 s per job / 2 workers
    assert outlook("qpu", _stats(2.0, samples=2), lane, 0, 1, 1001, CONFIG).need_s is None
    assert outlook("qpu", stats, lane, 0, 1, 1001, PredictConfig(predictive=False)).need_s is None
    probe = outlook("qpu", stats, lane, 0, 1, 1100, CONFIG, fresh=False)
    assert probe.need_s is None and probe.basis.startswith("probe: figures 100 s old")
    assert drain_s([queued, probe]) == pytest.approx(10.0) and drain_s([]) == 5.0


def _job(budget_ms: int = 5000, now: float = 1000.0) -> model.Job:
    plan = [{"lane": lane, "action": "try", "reason": "r"} for lane in ("qpu", "sim", "heuristic")]
    job, _ = model.new_job(job_id="b" * 32, tenant="t", client_id="c", kind="circuit", budget_ms=budget_ms,
                           request={}, plan=plan, fingerprint="sha256:" + "0" * 64,
                           cost_estimate={"usd": 0.0, "basis": ""}, now=now, problem_class="circuit:4")
    return job


def test_next_step_passes_a_slow_lane_over_and_keeps_the_decision() -> None:
    looks = {"qpu": Outlook("qpu", 5, wait_s=0.0, run_s=8.0), "sim": Outlook("sim"),
             "heuristic": Outlook("heuristic")}
    job, events = fallback.start(_job(), 1000, now=1000.0, outlooks=looks)
    assert [(a.lane, a.outcome) for a in job.attempts] == [("qpu", "skipped")]
    assert job.attempts[0].reason.startswith("predicted: qpu queue wait p90 0.0 s (0 ahead) + run 8.0 s")
    assert job.current is not None and job.current.lane == "sim" and job.current.limit_ms == 2500
    assert [d["action"] for d in job.decisions or []] == ["skip", "dispatch"]
    assert job.decisions[0]["outlook"]["run_s"] == 8.0 and job.decisions[1]["share_ms"] == 2500
    assert ("attempt.skipped", {"lane": "qpu", "outcome": "skipped", "reason": job.attempts[0].reason}) in events
    assert not fallback.passed_over_only(job)


def test_a_breaker_passes_the_lane_over_and_all_passed_over_fails_the_job() -> None:
    looks = {lane: Outlook(lane, blocked=f"breaker: open since x ({lane})") for lane in ("qpu", "sim")}
    looks["heuristic"] = Outlook("heuristic", 5, wait_s=9.0, run_s=1.0, ahead=12)
    job, _ = fallback.start(_job(), 1000, now=1000.0, outlooks=looks)
    assert job.status == "failed" and fallback.passed_over_only(job)
    assert [a.reason.split(":")[0] for a in job.attempts] == ["breaker", "breaker", "predicted"]


def test_without_outlooks_nothing_changes() -> None:
    job, _ = fallback.start(_job(), 1000, now=1000.0)
    assert job.current is not None and job.current.lane == "qpu" and job.current.limit_ms == 2500
    assert job.decisions is None and "decisions" not in job.model_dump()
