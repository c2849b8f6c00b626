"""Circuit breakers: the state machine, and the breakers in (fake) Redis through the job store with a
fake clock: opening on failures, cool-down, half-open probes one at a time, closing on success."""

from __future__ import annotations

import fakeredis
import pytest

from audit.channel import STREAM, decode_event
from jobs import model
from jobs.store import JobStore
from routing import fallback
from routing.breaker import Breaker, BreakerConfig, Breakers, breaker_key, probe_key, record
from telemetry.metrics import COUNTERS

CONFIG = BreakerConfig(window=10, failure_rate=0.5, consecutive=5, cooldown_s=30, probes=2)


def _feed(breaker: Breaker, outcomes: str, now: float = 0.0) -> tuple[Breaker, list]:
    changes = []
    for ch in outcomes:
        breaker, change = record(breaker, ch == "F", now, CONFIG)
        if change:
            changes.append(change)
    return breaker, changes


def test_opens_on_consecutive_failures() -> None:
    breaker, changes = _feed(Breaker(), "SFFFF")
    assert breaker.state == "closed" and not changes
    breaker, changes = _feed(breaker, "F", now=5.0)
    assert breaker.state == "open" and breaker.since == 5.0
    assert changes == [("closed", "open", "5 attempts in a row failed")]


def test_opens_on_the_failure_rate_of_a_full_window_only() -> None:
    breaker, changes = _feed(Breaker(), "FSFSFSFS")
    assert breaker.state == "closed"  # 4 of 8: the window is not full yet
    breaker, changes = _feed(breaker, "FF")
    assert breaker.state == "open" and changes == [("closed", "open", "6 of the last 10 attempts failed")]
    calm, changes = _feed(Breaker(), "FSSFSSFSSF")
    assert calm.state == "closed" and not changes  # 4 of 10


def test_half_open_closes_after_probes_and_reopens_on_a_failed_probe() -> None:
    half = Breaker(state="half_open", since=40.0, window="FFFFF", consecutive=5)
    after, changes = _feed(half, "S")
    assert after.state == "half_open" and after.probes_ok == 1 and not changes
    closed, changes = _feed(after, "S")
    assert closed.state == "closed" and closed.window == "" and changes[0][1] == "closed"
    reopened, changes = _feed(after, "F", now=50.0)
    assert reopened.state == "open" and reopened.since == 50.0 and changes[0][:2] == ("half_open", "open")
    stays, changes = _feed(Breaker(state="open", since=1.0), "SSS")
    assert stays.state == "open" and not changes  # late reports of attempts dispatched before it opened


def _job(store: JobStore, n: int, lane: str = "qpu") -> str:
    plan = [{"lane": lane, "action": "try", "reason": "first lane"},
            {"lane": "heuristic", "action": "try", "reason": "fallback"}]
    job, events = model.new_job(job_id=f"{n:032x}", tenant="t", client_id="c", kind="qubo", budget_ms=10_000,
                                request={}, plan=plan, fingerprint="sha256:" + "0" * 64,
                                cost_estimate={"usd": 0.0, "basis": ""}, problem_class="qubo:4")
    job, dispatched = fallback.start(job, 1000)
    assert store.create(job, {"kind": "qubo"}, events + dispatched)
    return job.job_id


def _conclude(store: JobStore, job_id: str, outcome: str) -> None:
    store.transition(job_id, fallback.begin_attempt, 1, "w", 1000)
    store.transition(job_id, fallback.conclude_attempt, 1, outcome, "" if outcome == "succeeded" else "boom", 1000,
                     result={})


def test_breakers_through_the_store_with_probes_one_at_a_time() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    breakers = Breakers(redis, CONFIG)
    store = JobStore(redis, 3600, observers=[breakers])
    for n in range(5):
        _conclude(store, _job(store, n), "failed")
    breaker = Breaker.loads(redis.get(breaker_key("qpu")))
    assert breaker.state == "open"
    opened_at = breaker.since
    first, second = f"{10:032x}", f"{11:032x}"  # the probing jobs' ids
    reason = breakers.admit("qpu", breaker, first, opened_at + 10)
    assert reason is not None and reason.startswith("breaker: open since ")
    assert reason.endswith("(5 attempts in a row failed)")
    # cool-down over: one job gets the probe, the next is turned away while it is in flight
    assert breakers.admit("qpu", breaker, first, opened_at + 31) is None
    assert Breaker.loads(redis.get(breaker_key("qpu"))).state == "half_open"
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), second, opened_at + 31) \
        .startswith("breaker: half-open")
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), first, opened_at + 31) is None
    _conclude(store, _job(store, 10), "succeeded")  # first, the probe
    assert redis.get(probe_key("qpu")) is None  # the probe reported: the next may go
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), second, opened_at + 32) is None
    _conclude(store, _job(store, 11), "succeeded")
    assert Breaker.loads(redis.get(breaker_key("qpu"))).state == "closed"
    events = [decode_event(f) for _, f in redis.xrange(STREAM)]
    moves = [(e["data"]["from_state"], e["data"]["to_state"]) for e in events if e["type"] == "lane.breaker"]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(e["job_id"] is None for e in events if e["type"] == "lane.breaker")  # lane-wide, not a job's
    counters = redis.hgetall(COUNTERS)
    assert counters["breaker|qpu|open"] == "1" and counters["breaker|qpu|closed"] == "1"
    assert Breaker.loads(redis.get(breaker_key("heuristic"))).state == "closed"


def test_the_store_retries_a_conclusion_that_raced_another_on_the_same_breaker() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    racing = {"armed": True}

    class RacedBreakers(Breakers):
        """Another worker concludes on the same lane between our read of the breaker and our MULTI."""

        def prepare(self, pipe, before, events):  # type: ignore[no-untyped-def]
            read = super().prepare(pipe, before, events)
            if read is not None and racing["armed"]:
                racing["armed"] = False
                store.transition(second, fallback.conclude_attempt, 1, "failed", "boom", 1000)
            return read

    store = JobStore(redis, 3600, observers=[RacedBreakers(redis, CONFIG)])
    first, second = _job(store, 1), _job(store, 2)
    store.transition(first, fallback.begin_attempt, 1, "w", 1000)
    store.transition(second, fallback.begin_attempt, 1, "w", 1000)
    store.transition(first, fallback.conclude_attempt, 1, "failed", "boom", 1000)
    assert not racing["armed"]
    assert Breaker.loads(redis.get(breaker_key("qpu"))).window == "11"  # neither outcome lost


@pytest.mark.parametrize("outcome", ["skipped", "cancelled"])
def test_outcomes_that_say_nothing_of_the_lane_leave_it_alone(outcome: str) -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = JobStore(redis, 3600, observers=[Breakers(redis, CONFIG)])
    job_id = _job(store, 1)
    if outcome == "cancelled":
        store.transition(job_id, model.cancel)
    else:
        store.transition(job_id, fallback.begin_attempt, 1, "w", 1000)
        store.transition(job_id, fallback.conclude_attempt, 1, "skipped", "capacity: no", 1000)
    assert Breaker.loads(redis.get(breaker_key("qpu"))).window == ""


def test_a_straggler_concluding_in_half_open_leaves_the_probe_to_its_holder() -> None:
    """An attempt admitted before the breaker opened may conclude while a probe is in flight: its outcome
    is evidence of the lane and counts, but the probe's claim stays with the probing job, so a second job
    cannot start a second probe beside the first."""
    redis = fakeredis.FakeRedis(decode_responses=True)
    breakers = Breakers(redis, CONFIG)
    store = JobStore(redis, 3600, observers=[breakers])
    straggler = _job(store, 99)
    store.transition(straggler, fallback.begin_attempt, 1, "w", 1000)
    for n in range(5):
        _conclude(store, _job(store, n), "failed")
    opened_at = Breaker.loads(redis.get(breaker_key("qpu"))).since
    probe = _job(store, 50)
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), probe, opened_at + 31) is None
    store.transition(straggler, fallback.conclude_attempt, 1, "succeeded", "", 1000, result={})
    assert redis.get(probe_key("qpu")) == probe
    assert Breaker.loads(redis.get(breaker_key("qpu"))).probes_ok == 1  # the straggler's success counted
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), "j2", opened_at + 32) \
        .startswith("breaker: half-open")
    _conclude(store, probe, "succeeded")
    assert redis.get(probe_key("qpu")) is None
