"""Checking requests against limits with the `limits` library's moving window, on Redis.

Why the moving window: it keeps the timestamp of each admitted request (a Redis list per subject, at most
``amount`` long) and admits a request only if fewer than ``amount`` fall in the last ``window_s`` seconds,
so no ``window_s`` span, wherever it starts, ever holds more than ``amount`` admitted requests. A fixed
window lets twice the limit through around each edge; the sliding-window counter approximates and can
let a little more through. The cost is one Lua script per limit per check (EVALSHA; LINDEX, LPUSH, LTRIM,
EXPIRE inside) and memory of ``amount`` timestamps per active subject.

A request spends its limits one after the other and stops at the first that refuses it. Each spend is
atomic in Redis, so concurrent requests can never overshoot a limit; a request refused by a later limit
keeps the entries it took in the earlier ones (it counts against them, which only ever limits more).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from ratelimit.policy import Limit, Rate

KEY_PREFIX = "qgate:rl"


class LimiterUnavailable(Exception):
    """The limiter's store did not answer; the request can be neither admitted nor refused on its limits."""


@dataclass(frozen=True)
class Decision:
    """The outcome of a check, with what the client is told about the binding limit: the one that
    refused, or on admission the one closest to running out."""

    allowed: bool
    limit: Limit
    remaining: int
    reset_s: float
    policies: tuple[Rate, ...]

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the binding limit admits one more request; at least 1."""
        return max(1, math.ceil(self.reset_s))

    def headers(self) -> dict[str, str]:
        """IETF draft RateLimit fields (draft-ietf-httpapi-ratelimit-headers-07), plus Retry-After when
        refused. ``RateLimit-Reset`` is the seconds until one more request is admitted."""
        out = {"RateLimit-Limit": str(self.limit.rate.amount),
               "RateLimit-Remaining": str(max(0, self.remaining)),
               "RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
               "RateLimit-Policy": ", ".join(dict.fromkeys(rate.policy for rate in self.policies))}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


def storage_key(limit: Limit) -> str:
    """The Redis key that holds ``limit``'s window: ``qgate:rl:<namespace>/<kind>/<sha256 prefix>/<amount>/
    <window>/second`` (for operators and tests; the amount and window are part of it, so a changed rate
    starts a fresh window)."""
    return f"{KEY_PREFIX}:{limit.rate.item(limit.namespace).key_for(*limit.key_parts())}"


class Limiter:
    """Moving-window checks against a `limits` storage (Redis in production, memory in unit tests)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    @classmethod
    def on_redis(cls, url: str, connection_pool: Any = None) -> "Limiter":
        """A limiter on the Redis at ``url``; ``connection_pool`` shares the app's connections (and their
        timeouts). Storage errors are wrapped so that the caller sees one exception type for all of them."""
        return cls(RedisStorage(url, connection_pool=connection_pool, key_prefix=KEY_PREFIX, wrap_exceptions=True))

    def acquire(self, limits: Sequence[Limit]) -> Decision:
        """Spend one request from each of ``limits`` in order, stopping at the first that refuses."""
        with _unavailable_on_storage_error():
            for limit in limits:
                if not self._strategy.hit(limit.rate.item(limit.namespace), *limit.key_parts()):
                    return self._decision(False, limit, limits)
            return self._closest(limits)

    def check(self, limits: Sequence[Limit]) -> Decision:
        """Whether one more request would be admitted by every limit, spending nothing."""
        with _unavailable_on_storage_error():
            stats = [(limit, self._stats(limit)) for limit in limits]
        refused = [(limit, s) for limit, s in stats if s[0] <= 0]
        if refused:
            limit, (remaining, reset_s) = max(refused, key=lambda pair: pair[1][1])
            return Decision(False, limit, remaining, reset_s, tuple(l.rate for l in limits))
        limit, (remaining, reset_s) = min(stats, key=lambda pair: pair[1][0])
        return Decision(True, limit, remaining, reset_s, tuple(l.rate for l in limits))

    def spend(self, limits: Sequence[Limit]) -> None:
        """Count one event against each of ``limits`` (a full window stays full)."""
        with _unavailable_on_storage_error():
            for limit in limits:
                self._strategy.hit(limit.rate.item(limit.namespace), *limit.key_parts())

    def _stats(self, limit: Limit) -> tuple[int, float]:
        stats = self._strategy.get_window_stats(limit.rate.item(limit.namespace), *limit.key_parts())
        return stats.remaining, max(0.0, stats.reset_time - time.time())

    def _decision(self, allowed: bool, limit: Limit, limits: Sequence[Limit]) -> Decision:
        remaining, reset_s = self._stats(limit)
        return Decision(allowed, limit, remaining, reset_s, tuple(l.rate for l in limits))

    def _closest(self, limits: Sequence[Limit]) -> Decision:
        stats = [(limit, self._stats(limit)) for limit in limits]
        limit, (remaining, reset_s) = min(stats, key=lambda pair: pair[1][0])
        return Decision(True, limit, remaining, reset_s, tuple(l.rate for l in limits))


@contextmanager
def _unavailable_on_storage_error() -> Iterator[None]:
    """The storage's errors (wrapped by `limits` as StorageError) as LimiterUnavailable."""
    try:
        yield
    except StorageError as exc:
        raise LimiterUnavailable(type(exc.storage_error).__name__) from exc
