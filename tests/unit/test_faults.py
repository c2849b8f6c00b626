"""Runtime fault drills: parsing, the Redis board over the start-up defaults, audit of each change."""

from __future__ import annotations

import json
import random
import statistics

import fakeredis
import pytest

from audit.channel import STREAM, decode_event
from routing.faults import FaultBoard, FaultSpecError, LaneFault, parse_items, parse_spec
from settings import SettingsError, parse_faults


def test_items_parse_and_refuse_what_they_cannot_read() -> None:
    assert parse_items(["qpu.delay_ms=8000", "qpu.fail_rate=0.3", "sim.delay_jitter=0.5"]) == {
        "qpu": {"delay_ms": 8000.0, "fail_rate": 0.3}, "sim": {"delay_jitter": 0.5}}
    for bad in ("qpu.delay=1", "gpu.delay_ms=1", "qpu.fail_rate=2", "qpu.delay_ms=-1", "qpu.delay_ms=x",
                "qpu.delay_ms=nan", "qpu"):
        with pytest.raises(FaultSpecError):
            parse_items([bad])
    with pytest.raises(SettingsError, match="QGATE_FAULTS"):
        parse_faults("qpu.delay_jitter=-1")
    assert parse_spec("qpu.delay_ms=10,qpu.delay_jitter=0.5") == {"qpu": LaneFault(0.0, 10, 0.5)}


def test_jitter_makes_the_delay_log_normal_around_its_median() -> None:
    rng = random.Random(3)
    assert LaneFault(delay_ms=2000).delay_s(rng) == 2.0
    samples = [LaneFault(delay_ms=2000, delay_jitter=0.5).delay_s(rng) for _ in range(4000)]
    assert 1.85 < statistics.median(samples) < 2.15
    assert max(samples) > 2 * 2.0 * 1.5 and min(samples) > 0  # a long right tail, never negative
    logs = [__import__("math").log(s) for s in samples]
    assert 0.45 < statistics.pstdev(logs) < 0.55


def test_the_board_overrides_defaults_and_audits_who_changed_it() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    board = FaultBoard(redis, {"sim": LaneFault(delay_ms=3000)})
    assert board.fault("qpu") == LaneFault() and board.fault("sim") == LaneFault(delay_ms=3000)
    board.set({"qpu": {"delay_ms": 8000, "fail_rate": 0.3}}, by="alice")
    board.set({"qpu": {"delay_jitter": 0.5}}, by="bob")
    assert board.fault("qpu") == LaneFault(0.3, 8000, 0.5)  # knobs not named keep their value
    board.clear(["sim"], by="carol")
    assert board.fault("sim") == LaneFault()  # clear silences the start-up default too
    assert board.show()["sim"]["source"] == "runtime"
    board.clear(["sim"], by="carol", to_default=True)
    assert board.fault("sim") == LaneFault(delay_ms=3000) and board.show()["sim"]["source"] == "default"
    events = [decode_event(fields) for _, fields in redis.xrange(STREAM)]
    assert [(e["type"], e["data"]["by"], e["data"]["action"]) for e in events] == [
        ("faults.changed", "alice", "set"), ("faults.changed", "bob", "set"),
        ("faults.changed", "carol", "clear"), ("faults.changed", "carol", "reset")]
    assert events[0]["data"]["lanes"]["qpu"]["delay_ms"] == 8000
    assert json.loads(redis.hget("qgate:faults", "qpu"))["fail_rate"] == 0.3


def test_redis_away_means_the_start_up_default() -> None:
    class Away:
        def hget(self, *_: object) -> None:
            raise ConnectionError("down")

    assert FaultBoard(Away(), {"qpu": LaneFault(fail_rate=1.0)}).fault("qpu") == LaneFault(fail_rate=1.0)
