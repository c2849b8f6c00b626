"""The attempt's own time limit and its cancellation, armed around the solver call only.

Celery's soft time limit raises asynchronously wherever the task happens to be when it fires: inside a
Redis read, inside kombu publishing the next lane's message, inside the result write to the pool's
pipe. An exception there leaves a connection or a pipe half-used, which is how lane workers came to log
``UnicodeDecodeError`` and ``UnpicklingError`` and wedge after Redis trouble. So the lane tasks carry no
soft limit: this alarm is armed just before the solver starts and disarmed as soon as it returns, and
every Redis call of the attempt runs with the alarm off. Celery's hard limit stays, set past the lease,
for a solver stuck in native code.

Cancellation rides on the same alarm. While the solver runs, a watcher thread asks ``cancelled()``
every ``poll_s``; once the job is cancelled it signals the main thread, whose handler raises
``AttemptCancelled`` inside the solver: PyVRP, HiGHS's Python loop, QAOA's optimiser and the QPU
adapters' polling all return to Python often enough to take it within milliseconds (the QPU solver
then cancels the provider's job on its way out). A solver held in native code for longer (an Aer
simulation, one long HiGHS call) cannot take a Python exception, so if the attempt has not ended
``kill_after_s`` after the cancellation, the watcher kills its own pool process: Celery's pool starts
a fresh one, and the task's message, rejected because its process was lost, is redelivered and
dropped as stale (the job is already cancelled).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import structlog

from orchestrator.service import AttemptCancelled, AttemptTimeLimit

log = structlog.get_logger("qgate.worker")
CANCEL_POLL_S = 0.2
KILL_AFTER_S = 2.0


@contextmanager
def alarm_at(deadline: float, cancelled: Callable[[], bool] | None = None, *, poll_s: float = CANCEL_POLL_S,
             kill_after_s: float = KILL_AFTER_S) -> Iterator[None]:
    """Raise AttemptTimeLimit inside the block if it is still running at ``deadline`` (epoch seconds),
    and AttemptCancelled within about ``poll_s`` of ``cancelled()`` turning true.

    Signals reach only the main thread, where a prefork pool child runs its task; elsewhere (tests,
    a threaded pool) the block runs without either and relies on the solver's own limit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    was_cancelled = threading.Event()
    done = threading.Event()
    # The watcher signals only while the block runs: a SIGALRM that arrived after the handler was put back
    # (SIG_DFL in a pool child) would end the process.
    signalling = threading.Lock()

    def fire(signum: int, frame: Any) -> None:
        if done.is_set():
            return  # a cancellation signal that arrived as the block was ending
        raise AttemptCancelled() if was_cancelled.is_set() else AttemptTimeLimit()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.time(), 0.001))
    watcher = None
    if cancelled is not None:
        watcher = threading.Thread(target=_watch, args=(cancelled, was_cancelled, done, signalling, poll_s,
                                                        kill_after_s),
                                   name="qgate-cancel-watch", daemon=True)
        watcher.start()
    try:
        yield
    finally:
        with signalling:
            done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if watcher is not None:
            watcher.join(poll_s + 1)


def _watch(cancelled: Callable[[], bool], was_cancelled: threading.Event, done: threading.Event,
           signalling: threading.Lock, poll_s: float, kill_after_s: float) -> None:
    main = threading.main_thread().ident
    while not done.wait(poll_s):
        try:
            if not cancelled():
                continue
        except Exception:  # Redis away: the attempt's time limit and lease still hold
            continue
        assert main is not None
        with signalling:
            if done.is_set():
                return
            was_cancelled.set()
            signal.pthread_kill(main, signal.SIGALRM)
        if done.wait(kill_after_s):
            return
        log.warning("solver_not_interruptible_killing_process", pid=os.getpid(), waited_s=kill_after_s)
        os.kill(os.getpid(), signal.SIGKILL)
