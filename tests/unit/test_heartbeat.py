"""When a worker's heartbeat is withheld: its event loop stopped turning, or its pool has no live child."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from workers import heartbeat


def _consumer(exitcodes: list[int | None] | None, hub: bool = True) -> SimpleNamespace:
    pool = None if exitcodes is None else SimpleNamespace(
        _pool=SimpleNamespace(_pool=[SimpleNamespace(exitcode=code) for code in exitcodes]))
    return SimpleNamespace(hub=object() if hub else None, pool=pool)


def test_a_turning_loop_with_a_live_child_can_work() -> None:
    heartbeat._tick()
    assert heartbeat.can_work(_consumer([None, 1]), 1.0)[0]


def test_a_wedged_event_loop_withholds_the_beat() -> None:
    heartbeat._tick()
    now = heartbeat._last_tick[0] + 3.5
    ok, why = heartbeat.can_work(_consumer([None]), 1.0, now=now)
    assert not ok and "event loop idle" in why


def test_a_pool_without_live_children_withholds_the_beat() -> None:
    heartbeat._tick()
    ok, why = heartbeat.can_work(_consumer([-9, 1]), 1.0)
    assert not ok and why == "no live pool child"


def test_pools_that_do_not_report_children_and_loops_without_a_hub_are_trusted() -> None:
    assert heartbeat.can_work(_consumer(None, hub=False), 1.0, now=1e12)[0]


def test_a_provider_slow_to_report_its_queue_never_stops_the_beat(monkeypatch: Any) -> None:
    """IBM's ``backend.status()`` or Braket's ``queue_depth()`` is a network call that may hang; the qpu
    worker's beat must go on meanwhile, or the planner would count a working lane as dead."""
    import fakeredis

    from routing.health import alive_key
    from routing.provider_queue import provider_queue_key
    from workers import attempt

    client = fakeredis.FakeRedis(decode_responses=True)
    provider_answers = threading.Event()

    def slow_figure(lane: str) -> dict[str, Any]:
        provider_answers.wait(10)
        return {"source": "slow provider", "pending_jobs": 4}

    monkeypatch.setattr(heartbeat, "get_redis", lambda: client)
    monkeypatch.setattr(heartbeat, "get_settings", lambda: SimpleNamespace(worker_heartbeat_s=0.05))
    monkeypatch.setattr(attempt, "lane_limits", lambda lane: SimpleNamespace(as_dict=lambda: {}))
    monkeypatch.setattr(attempt, "provider_queue_figure", slow_figure)
    consumer = SimpleNamespace(hostname="qpu@test", hub=None, pool=None, app=SimpleNamespace(
        amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"qpu.interactive": 1, "qpu": 1}))))
    heartbeat._stop.clear()
    try:
        heartbeat._start_beating(consumer)
        time.sleep(0.3)  # six beats while the provider has not answered once
        first = client.zscore(alive_key("qpu"), "qpu@test")
        time.sleep(0.2)
        assert first is not None and client.zscore(alive_key("qpu"), "qpu@test") > first
        assert client.get(provider_queue_key("qpu")) is None
        provider_answers.set()
        deadline = time.monotonic() + 5
        while client.get(provider_queue_key("qpu")) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "slow provider" in client.get(provider_queue_key("qpu"))
    finally:
        heartbeat._stop.set()
        provider_answers.set()
        time.sleep(0.15)  # both threads see the stop before the flag is reset for other tests
        heartbeat._stop.clear()
