"""Cancellation reaching the work: the watch raises inside a running solver, cancels a QPU provider's
queued job on the way out, and kills its own process when the solver cannot take an exception."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from orchestrator.service import AttemptCancelled, AttemptTimeLimit
from solvers.problems import parse_problem
from solvers.qpu import EmulatedQpu, QpuCircuitSolver
from workers.time_limit import alarm_at

BELL = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"


def _cancelled_after(seconds: float):
    at = time.monotonic() + seconds
    return lambda: time.monotonic() >= at


def test_a_cancellation_raises_inside_a_running_python_solver_within_a_poll() -> None:
    started = time.monotonic()
    with pytest.raises(AttemptCancelled):
        with alarm_at(time.time() + 30, _cancelled_after(0.3), poll_s=0.05):
            while True:  # a solver's Python loop
                sum(range(1000))
    assert time.monotonic() - started < 0.3 + 0.3


def test_without_a_cancellation_the_time_limit_still_fires_and_a_finished_block_is_left_alone() -> None:
    with pytest.raises(AttemptTimeLimit):
        with alarm_at(time.time() + 0.2, lambda: False, poll_s=0.05):
            time.sleep(5)
    with alarm_at(time.time() + 30, lambda: False, poll_s=0.05):
        pass
    time.sleep(0.2)  # no stray signal after the block


def test_a_watch_that_cannot_reach_redis_keeps_the_solver_running() -> None:
    def unreachable() -> bool:
        raise ConnectionError("redis away")

    with alarm_at(time.time() + 30, unreachable, poll_s=0.02):
        time.sleep(0.2)


def test_a_queued_qpu_job_is_cancelled_at_the_provider_when_its_attempt_is() -> None:
    adapter = EmulatedQpu(queue_delay_s=30)
    solver = QpuCircuitSolver(adapter)
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 100})
    submitted: list[str] = []
    submit = adapter.submit
    adapter.submit = lambda *args: submitted.append(submit(*args)) or submitted[-1]  # type: ignore[method-assign]
    with pytest.raises(AttemptCancelled) as raised:
        with alarm_at(time.time() + 60, lambda: bool(submitted), poll_s=0.05):  # cancelled once it waits
            solver.solve(problem, time_limit_s=50, seed=1)
    provider_job = raised.value.provider_job
    assert provider_job["cancel_confirmed"] is True and provider_job["state"] == "cancelled"
    assert adapter.poll(provider_job["job"]) == "cancelled"


def test_a_solver_held_in_native_code_is_ended_by_killing_its_process() -> None:
    """SIGALRM blocked stands in for native code that never returns to the interpreter."""
    script = textwrap.dedent("""
        import signal, time
        from workers.time_limit import alarm_at
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        with alarm_at(time.time() + 60, lambda: True, poll_s=0.05, kill_after_s=0.5):
            time.sleep(30)
        print("not reached")
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "not reached" not in done.stdout
    assert time.monotonic() - started < 10


def test_a_cancellation_racing_the_end_of_the_block_never_signals_after_it() -> None:
    """With SIGALRM's default action restored after the block (as in a pool child), a signal sent after the
    block ended would kill the process; blocks ending just as the job is cancelled must leave it alive."""
    script = textwrap.dedent("""
        import time
        from orchestrator.service import AttemptCancelled
        from workers.time_limit import alarm_at
        for n in range(300):
            try:
                with alarm_at(time.time() + 30, lambda: True, poll_s=0.0002, kill_after_s=5):
                    time.sleep((n % 7) * 0.0001)
            except AttemptCancelled:
                pass
        time.sleep(0.05)
        print("alive")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "alive" in done.stdout, (done.returncode, done.stderr[-500:])
