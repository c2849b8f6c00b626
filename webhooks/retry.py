"""When to try a delivery again: exponential backoff with jitter, honouring Retry-After, within a window.

Retried: network errors and timeouts (no status), 5xx and 429. Not retried: any other status, 410 Gone
included (the receiver says the endpoint is gone), redirects (never followed), and refusals by the SSRF
guard. Attempt ``n`` (the first retry is n = 1) waits ``base_s · 2^(n-1)`` capped at ``max_s``, times a
jitter factor drawn from [1 - jitter, 1 + jitter] so that receivers recovering from an outage are not hit
by every sender at once; a ``Retry-After`` longer than that wins. No attempt starts after the window
(``window_s`` from when the job ended or a redelivery was asked).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["delivered", "retry", "failed"]


def verdict(status: int | None, refused: bool = False) -> Verdict:
    """What an attempt's outcome means: ``status`` None is a network error or timeout."""
    if refused:
        return "failed"
    if status is None or status == 429 or 500 <= status <= 599:
        return "retry"
    return "delivered" if 200 <= status <= 299 else "failed"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 5.0
    max_s: float = 3600.0
    window_s: float = 24 * 3600.0
    jitter: float = 0.2

    def delay(self, n: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """How long to wait before retry ``n`` (1 = the first retry)."""
        nominal = min(self.base_s * 2 ** (n - 1), self.max_s)
        factor = 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(nominal * factor, retry_after_s or 0.0)

    def next_attempt_at(self, n: int, window_start: float, now: float, retry_after_s: float | None = None,
                        rng: random.Random | None = None) -> float | None:
        """When retry ``n`` is due, or None when that would fall past the window (give up)."""
        due = now + self.delay(n, retry_after_s, rng)
        return due if due <= window_start + self.window_s else None
