"""A provider's own figure for its queue, as the lane's workers last published it.

Only the QPU adapters know it (IBM's ``pending_jobs``, Braket's queue depth, the HTTP provider's backend
description, the emulated device's configured delay), and only the lane's workers hold an adapter, so
a thread beside each worker's heartbeat publishes it with a TTL of three beats; the planner and the job resource
read it beside the broker's figures. A figure that stops being refreshed expires rather than lingers.
"""

from __future__ import annotations

import json
from typing import Any


def provider_queue_key(lane: str) -> str:
    return f"qgate:lane:{lane}:provider_queue"


def publish(redis: Any, lane: str, figure: dict[str, Any], ttl_s: float) -> None:
    redis.set(provider_queue_key(lane), json.dumps(figure, separators=(",", ":")), px=max(int(ttl_s * 1000), 1))


def loads(raw: str | None) -> dict[str, Any] | None:
    """The published figure, or None (absent, expired or unreadable: no figure rather than a wrong one)."""
    if not raw:
        return None
    try:
        figure = json.loads(raw)
    except ValueError:
        return None
    return figure if isinstance(figure, dict) else None


def wait_s(figure: dict[str, Any] | None, mean_run_s: float | None) -> float | None:
    """The wait the provider's figure implies for a new job: its own estimate when it gives one, else
    its pending jobs × the lane's mean run time (which then must be known)."""
    if not figure:
        return None
    wait = figure.get("wait_s")
    if isinstance(wait, (int, float)) and wait >= 0:
        return float(wait)
    pending = figure.get("pending_jobs")
    if isinstance(pending, int) and pending >= 0 and mean_run_s is not None:
        return pending * mean_run_s
    return None


def describe(figure: dict[str, Any]) -> str:
    parts = []
    if figure.get("pending_jobs") is not None:
        parts.append(f"{figure['pending_jobs']} pending")
    if figure.get("wait_s") is not None:
        parts.append(f"wait {float(figure['wait_s']):.1f} s")
    return f"provider ({figure.get('source', 'unknown')}): {', '.join(parts) or 'no figure'}"
