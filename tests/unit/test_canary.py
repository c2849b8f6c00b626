"""The calibration canary: GHZ scoring, the drift drill on the emulated device, and what a reading does
to the lane's breaker (fakeredis, explicit clock)."""

from __future__ import annotations

import time

import fakeredis
import pytest

from audit.channel import STREAM, decode_event
from routing.breaker import Breaker, BreakerConfig, Breakers, breaker_key
from routing.canary import CanaryConfig, claim_run, latest, record, series
from routing.faults import FaultSpecError, parse_items
from solvers.canary import fidelity, ghz_qasm, run_canary
from solvers.qpu import EmulatedQpu, QpuCircuitSolver, flip_bits
from telemetry.metrics import GAUGES

CONFIG = CanaryConfig(period_s=60, min_fidelity=0.75, qubits=3, shots=1000, keep=5)


def _reading(value: float | None, at: float = 0.0, error: str | None = None) -> dict:
    reading = {"at": at, "backend": "fake_manila", "qubits": 3, "shots": 1000}
    if value is not None:
        reading["fidelity"] = value
    if error:
        reading["error"] = error
    return reading


def _events(redis: fakeredis.FakeRedis, kind: str) -> list[dict]:
    return [e for e in (decode_event(fields) for _, fields in redis.xrange(STREAM)) if e["type"] == kind]


@pytest.mark.parametrize("counts, expected", [
    ({"000": 500, "111": 500}, 1.0), ({"000": 1000}, 0.5), ({"111": 7}, 0.5), ({"010": 500, "101": 500}, 0.0),
])
def test_fidelity_against_the_ideal_ghz_distribution(counts: dict, expected: float) -> None:
    assert fidelity(counts, 3) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("qubits", [1, 17, 0, -3])
def test_canary_circuits_outside_the_supported_sizes_are_refused(qubits: int) -> None:
    with pytest.raises(ValueError):
        ghz_qasm(qubits)


def test_flipping_bits_keeps_the_shot_count_and_is_seeded() -> None:
    import random

    counts = {"000": 600, "111": 400}
    once, again = flip_bits(counts, 0.1, random.Random(3)), flip_bits(counts, 0.1, random.Random(3))
    assert once == again and sum(once.values()) == 1000 and len(once) > 2
    assert flip_bits(counts, 0.0, random.Random(3)) == counts
    assert flip_bits(counts, 1.0, random.Random(3)) == {"000": 400, "111": 600}


def test_the_drift_drill_lowers_the_emulated_devices_fidelity() -> None:
    """Measured on fake_manila (GHZ-3, 1000 shots): ~0.87 undrifted; readout_flip=0.1 takes it to ~0.65."""
    adapter = EmulatedQpu("fake_manila")
    solver = QpuCircuitSolver(adapter)
    steady = run_canary(solver, qubits=3, shots=1000, seed=11, time_limit_s=30)
    adapter.readout_drift = 0.1
    drifted = run_canary(solver, qubits=3, shots=1000, seed=11, time_limit_s=30)
    assert steady.error is None and drifted.error is None
    assert steady.fidelity > 0.8 > 0.7 > drifted.fidelity
    assert steady.transpiled_depth and steady.job and steady.backend == "fake_manila"


def test_a_canary_that_cannot_run_reports_the_error_instead_of_raising() -> None:
    solver = QpuCircuitSolver(EmulatedQpu("fake_manila", failure_rate=1.0))
    reading = run_canary(solver, qubits=3, shots=200, seed=1, time_limit_s=10)
    assert reading.fidelity is None and "failure" in reading.error


def test_the_readout_flip_knob_is_a_probability() -> None:
    assert parse_items(["qpu.readout_flip=0.05"]) == {"qpu": {"readout_flip": 0.05}}
    for bad in ("qpu.readout_flip=1.5", "qpu.readout_flip=-0.1", "qpu.readout_flip=nan"):
        with pytest.raises(FaultSpecError):
            parse_items([bad])


def test_a_low_reading_opens_the_breaker_with_the_figure_and_is_audited() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    assert record(redis, "qpu", _reading(0.93, at=1.0), CONFIG, now=100.0) is None
    assert Breaker.loads(redis.get(breaker_key("qpu"))).state == "closed"
    assert record(redis, "qpu", _reading(0.61, at=2.0), CONFIG, now=200.0) == "open"
    breaker = Breaker.loads(redis.get(breaker_key("qpu")))
    assert breaker.state == "open" and breaker.since == 200.0
    assert breaker.reason == "canary fidelity 0.61 < 0.75 on fake_manila"
    transitions = _events(redis, "lane.breaker")
    assert [(e["data"]["from_state"], e["data"]["to_state"]) for e in transitions] == [("closed", "open")]
    assert [e["data"]["fidelity"] for e in _events(redis, "lane.canary")] == [0.93, 0.61]
    assert float(redis.hget(GAUGES, "canary_fidelity|qpu")) == 0.61
    assert float(redis.hget(GAUGES, "breaker_state|qpu")) == 2


def test_low_readings_keep_an_open_breaker_cooling_and_reopen_a_half_open_one() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    breakers = Breakers(redis, BreakerConfig(cooldown_s=30))
    record(redis, "qpu", _reading(0.5), CONFIG, now=0.0)
    assert record(redis, "qpu", _reading(0.55), CONFIG, now=25.0) is None  # still open: the cool-down restarts
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), "job-a", now=40.0) is not None
    assert breakers.admit("qpu", Breaker.loads(redis.get(breaker_key("qpu"))), "job-a", now=56.0) is None
    assert Breaker.loads(redis.get(breaker_key("qpu"))).state == "half_open"
    assert record(redis, "qpu", _reading(0.6), CONFIG, now=57.0) == "open"


def test_good_readings_and_failed_runs_leave_the_breaker_alone() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    record(redis, "qpu", _reading(0.4), CONFIG, now=0.0)
    assert record(redis, "qpu", _reading(0.95), CONFIG, now=10.0) is None
    assert record(redis, "qpu", _reading(None, error="QpuError: down"), CONFIG, now=20.0) is None
    assert Breaker.loads(redis.get(breaker_key("qpu"))).state == "open"
    assert redis.hget(GAUGES, "canary_fidelity|qpu") == "0.95"
    assert float(redis.hget(GAUGES, "canary_last_run|qpu")) == 0.0  # the failed run's ``at``, too


def test_the_gauges_reach_the_metrics_exposition_under_the_names_alerts_use() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from telemetry.metrics import RedisCollector

    redis = fakeredis.FakeRedis(decode_responses=True)
    record(redis, "qpu", _reading(0.61, at=1700.5), CONFIG, now=1701.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(redis, lambda _: {"qpu": [], "sim": [], "heuristic": []}))
    text = generate_latest(registry).decode()
    assert 'qgate_canary_fidelity{lane="qpu"} 0.61' in text
    assert 'qgate_breaker_state{lane="qpu"} 2.0' in text
    assert 'qgate_canary_last_run_timestamp_seconds{lane="qpu"} 1700.5' in text


def test_the_series_is_newest_first_and_bounded() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    for i in range(8):
        record(redis, "qpu", _reading(0.9, at=float(i)), CONFIG, now=float(i))
    assert [r["at"] for r in series(redis, "qpu", 100)] == [7.0, 6.0, 5.0, 4.0, 3.0]
    assert latest(redis, "qpu")["at"] == 7.0 and series(redis, "qpu", 2)[1]["at"] == 6.0


def test_one_claim_per_period_fleet_wide_and_none_when_off() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    quick = CanaryConfig(period_s=0.2)
    assert [claim_run(redis, "qpu", quick) for _ in range(5)] == [True, False, False, False, False]
    time.sleep(0.25)
    assert claim_run(redis, "qpu", quick)
    assert not claim_run(redis, "sim", CanaryConfig(period_s=0))
