"""Attack suite (e): chaos under a steady load, with real workers on a stack of its own.

Each drill (bench/chaos.py, which ``make chaos`` runs for longer) submits a few small async jobs a second,
hurts one process mid-load — Redis restarted, paused 15 s, ``kill -9``ed; the heuristic worker's process
group ``kill -9``ed; the audit writer paused past its 10 s lock with a standby beside it; the watchdog
killed — restarts what it killed as a supervisor would, and then holds the stack to the invariants:
every accepted job ends, no job or audit event is lost or written twice, no other process exits, and
the audit log verifies.

The drills kill things, so they run on their own stack (not the session's), one per module: each drill
leaves it whole for the next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.chaos import STACK_ENV, ChaosRunner, DrillResult, table
from tests.integration import problems
from tests.integration.stack import Stack, wait_for

SECONDS = 8.0  # of load per drill; the fault comes after 2.4 s
RATE = 4.0  # jobs per second
RESULTS: list[DrillResult] = []


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRunner]:
    stack = Stack(Path(tmp_path_factory.mktemp("chaos")), **STACK_ENV)
    try:
        stack.start()
        runner = ChaosRunner(stack)
    except BaseException:
        stack.stop()
        raise
    yield runner
    standby = getattr(stack, "audit_standby", None)
    if standby is not None:
        standby.stop()
    stack.stop()
    if RESULTS:
        print("\n" + table(RESULTS))


def _run(chaos: ChaosRunner, drill: str) -> DrillResult:
    result = chaos.run(drill, SECONDS, RATE)
    RESULTS.append(result)
    return result


def _explain(chaos: ChaosRunner, result: DrillResult) -> str:
    tails = []
    for name, proc in chaos.stack.processes().items():
        if hasattr(proc, "tail"):
            lines = [line for line in proc.tail(400).splitlines() if '"qiskit.' not in line]
            tails.append(f"--- {name} ---\n" + "\n".join(line[:400] for line in lines[-8:]))
    return "\n".join([f"{result.drill}: {result.row()}", *result.violations(), *tails])


def _assert_invariants(chaos: ChaosRunner, result: DrillResult) -> None:
    assert result.accepted > 0, _explain(chaos, result)
    assert result.stuck == 0, _explain(chaos, result)
    assert result.ended == result.accepted - result.lost, _explain(chaos, result)
    assert result.duplicated == 0, _explain(chaos, result)
    assert result.missing == 0 and result.extra == 0, _explain(chaos, result)
    assert result.exited == [], _explain(chaos, result)
    assert result.verify_ok, _explain(chaos, result)
    assert result.details["audit_drained"], _explain(chaos, result)


def test_redis_restarted_under_load(chaos: ChaosRunner) -> None:
    result = _run(chaos, "redis_restart")
    _assert_invariants(chaos, result)
    assert result.lost == 0  # a clean shutdown writes its AOF out


def test_redis_paused_15_s_under_load(chaos: ChaosRunner) -> None:
    result = _run(chaos, "redis_pause")
    _assert_invariants(chaos, result)
    assert result.lost == 0


def test_redis_kill9_under_load(chaos: ChaosRunner) -> None:
    """Redis writes its AOF to the kernel before it answers, so killing the process (not the host) loses
    no acknowledged write: no accepted job may be lost either."""
    result = _run(chaos, "redis_kill9")
    _assert_invariants(chaos, result)
    assert result.lost == 0


def test_lane_worker_process_group_kill9_under_load(chaos: ChaosRunner) -> None:
    """The killed worker's attempts end by their leases (the watchdog is alive): every job within its
    budget plus the lease grace."""
    result = _run(chaos, "lane_worker_kill9")
    _assert_invariants(chaos, result)
    assert result.lost == 0 and result.late == 0, _explain(chaos, result)


def test_audit_writer_paused_past_its_lock_with_a_standby(chaos: ChaosRunner) -> None:
    """The standby takes the lock when the paused writer's expires, but cannot open the log while the
    paused one holds its flock; it writes once the first one wakes, finds its lock gone and closes."""
    result = _run(chaos, "audit_pause_with_standby")
    _assert_invariants(chaos, result)
    assert result.details.get("standby_took_over"), _explain(chaos, result)
    assert result.lost == 0 and result.late == 0, _explain(chaos, result)


def test_watchdog_killed_under_load(chaos: ChaosRunner) -> None:
    """With the watchdog dead for 8 s the live lanes still end their own attempts; an attempt waiting in
    an over-capacity queue ends when the watchdog is back (``late`` is reported, not judged: no process
    but the watchdog ends a lease)."""
    result = _run(chaos, "watchdog_kill")
    _assert_invariants(chaos, result)
    assert result.lost == 0


def _record(stack: Stack, job_id: str) -> dict[str, Any] | None:
    import json

    try:
        raw = stack.redis().get(f"qgate:job:{job_id}")
    except Exception:  # Redis restarting
        return None
    return json.loads(raw) if raw else None


def test_a_qpu_answer_that_arrives_while_redis_restarts_is_kept(chaos: ChaosRunner) -> None:
    """Found by redis_restart under load (at b22f5ed a qpu attempt failed with 'ConnectionError: Error
    111' from the calibration write right after its solver answered); made deterministic with a 4 s
    emulated queue delay: Redis is down from 1.5 s into the attempt until well after the device answers,
    and back long before the attempt's lease ends. The answer and its calibration are kept."""
    stack = chaos.stack
    with stack.worker_env("qpu", QGATE_QPU_QUEUE_DELAY_MS="4000"):
        chaos.wait_ready()
        token = stack.token(chaos.client)
        reply = stack.solve(token, {"problem": problems.circuit(), "solver": "qpu", "seed": 3}, budget_ms=24_000)
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        wait_for(lambda: ((_record(stack, job_id) or {}).get("current") or {}).get("started_at"), 30,
                 "the qpu attempt to start")
        time.sleep(1.5)
        stack.restart_redis(5.0)  # the device answers ~4 s into the attempt, while Redis is down
        job = stack.wait_job(token, job_id, timeout=60)
    chaos.wait_ready()
    first = job["attempts"][0]
    assert first["lane"] == "qpu"
    assert first["outcome"] == "succeeded", first
    assert job["status"] == "succeeded" and job["solver"]["lane"] == "qpu", job
    calibration = job["provenance"]["calibration"]
    assert calibration and stack.redis().exists(f"qgate:calibration:{calibration['sha256']}")

