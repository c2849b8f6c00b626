"""The durable channel that carries audit events from the gateway and workers to the audit worker.

A Redis stream read through a consumer group: an event stays in the stream until the audit worker has
written it to the log and acknowledged it, so events emitted while the audit worker is down wait for it.
(Celery's own event stream is pub/sub over Redis and loses whatever nobody is listening to.)
"""

from __future__ import annotations

import json
import time
from typing import Any

STREAM = "qgate:audit:events"
GROUP = "audit-writer"
DEAD_LETTERS = "qgate:audit:dead-letters"  # events the log could not hold, kept as they came


def job_index_key(job_id: str) -> str:
    """The set of log indices holding a job's entries (kept by the audit writer)."""
    return f"qgate:audit:job:{job_id}"


def event_fields(event_type: str, *, job_id: str | None = None, tenant: str | None = None,
                 **data: Any) -> dict[str, str]:
    """The stream fields of one event: its JSON, stamped with the time it happened."""
    event = {"type": event_type, "ts": round(time.time(), 6), "job_id": job_id, "tenant": tenant,
             "data": data}
    return {"event": json.dumps(event, separators=(",", ":"), sort_keys=True, default=str)}


def emit(pipe_or_redis: Any, event_type: str, **kwargs: Any) -> None:
    """Queue an event on the stream; pass a MULTI pipeline to make it atomic with a state change."""
    pipe_or_redis.xadd(STREAM, event_fields(event_type, **kwargs))


def ensure_group(redis: Any) -> None:
    """Create the consumer group (and the stream) if they do not exist yet."""
    try:
        redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except Exception as exc:  # redis.ResponseError BUSYGROUP: the group already exists
        if "BUSYGROUP" not in str(exc):
            raise


def decode_event(fields: dict[Any, Any]) -> dict[str, Any]:
    raw = fields.get(b"event", fields.get("event"))
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)
