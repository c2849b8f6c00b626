"""When a worker's heartbeat is withheld: its event loop stopped turning, or its pool has no live child."""

from __future__ import annotations

from types import SimpleNamespace

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
