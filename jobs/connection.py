"""Redis clients for the job store, audit channel and metrics."""

from __future__ import annotations

from functools import lru_cache

import redis

from settings import get_settings


def connect(url: str, blocking: bool = False) -> redis.Redis:
    """A client that fails fast when Redis is down. ``blocking`` drops the read timeout, for BLPOP."""
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2,
                                socket_timeout=None if blocking else 5, health_check_interval=30)


@lru_cache(maxsize=2)
def get_redis(blocking: bool = False) -> redis.Redis:
    """The process's shared client, for code that runs outside a Flask app (workers, CLI)."""
    return connect(get_settings().redis_url, blocking)
