"""How much of a job's latency budget each lane attempt may use.

Every lane but the last in the plan may use half of what is left, so that a lane that fails or times out
always leaves its successors real time to answer; the last lane gets what is left minus a margin for
handing the answer back. An attempt shorter than MIN_ATTEMPT_MS is not worth starting.
"""

from __future__ import annotations

MIN_ATTEMPT_MS = 100
RETURN_MARGIN_MS = 150


def attempt_time_limit_ms(remaining_ms: float, lanes_after: int) -> int:
    """The time limit of the next attempt, given the budget left and how many lanes could follow it."""
    if lanes_after > 0:
        return int(remaining_ms // 2)
    margin = min(RETURN_MARGIN_MS, remaining_ms * 0.1)
    return int(remaining_ms - margin)


def worth_starting(limit_ms: int) -> bool:
    return limit_ms >= MIN_ATTEMPT_MS
