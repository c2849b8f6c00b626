"""The attempt's own time limit, armed around the solver call only.

Celery's soft time limit raises asynchronously wherever the task happens to be when it fires: inside a
Redis read, inside kombu publishing the next lane's message, inside the result write to the pool's
pipe. An exception there leaves a connection or a pipe half-used, which is how lane workers came to log
``UnicodeDecodeError`` and ``UnpicklingError`` and wedge after Redis trouble. So the lane tasks carry no
soft limit: this alarm is armed just before the solver starts and disarmed as soon as it returns, and
every Redis call of the attempt runs with the alarm off. Celery's hard limit stays, set past the lease,
for a solver stuck in native code.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from orchestrator.service import AttemptTimeLimit


def _fire(signum: int, frame: Any) -> None:
    raise AttemptTimeLimit()


@contextmanager
def alarm_at(deadline: float) -> Iterator[None]:
    """Raise AttemptTimeLimit inside the block if it is still running at ``deadline`` (epoch seconds).

    Signals reach only the main thread, where a prefork pool child runs its task; elsewhere (tests,
    a threaded pool) the block runs without the alarm and relies on the solver's own limit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.time(), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
