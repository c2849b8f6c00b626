"""The process's Redis clients for code that runs outside a Flask app (workers, the CLI)."""

from __future__ import annotations

from functools import lru_cache

import redis

from jobs.connection import connect
from settings import get_settings


@lru_cache(maxsize=2)
def get_redis(blocking: bool = False) -> redis.Redis:
    """The process's shared client, created on first use from the settings."""
    return connect(get_settings().redis_url, blocking)
