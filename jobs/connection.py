"""Redis clients for the job store, audit channel and metrics."""

from __future__ import annotations

import redis



def connect(url: str, blocking: bool = False) -> redis.Redis:
    """A client that fails fast when Redis is down. ``blocking`` drops the read timeout, for BLPOP."""
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2,
                                socket_timeout=None if blocking else 5, health_check_interval=30)
