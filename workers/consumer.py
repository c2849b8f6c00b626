"""The lane workers' Celery consumer, reconnecting promptly when Redis comes back.

Celery's consumer reconnects with kombu's defaults, hard-coded in its call: waits of 2, 4, 6 ... up to
30 s. After a Redis restart of two seconds a lane stayed deaf for six more; after a longer outage, up
to half a minute. Here the waits are 0.25 s growing by 0.5 s up to 2 s: a reconnect attempt is one TCP
connect, cheap for Redis even from many workers.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer

RECONNECT = {"interval_start": 0.25, "interval_step": 0.5, "interval_max": 2.0}


class PromptReconnectConsumer(Consumer):
    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(type(conn).ensure_connection, conn, **RECONNECT)
        return super().ensure_connected(conn)
