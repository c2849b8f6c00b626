"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from api.auth import require
from api.openapi import openapi_document
from api.services import services
from routing.health import lane_statuses, live_workers
from telemetry.metrics import RedisCollector

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    svc = services()
    try:
        svc.redis.ping()
    except Exception as exc:  # any failure to reach Redis means not ready
        return jsonify({"ready": False, "redis": f"unreachable: {type(exc).__name__}", "lanes": {}}), 503
    lanes = {lane: {"alive": status.alive, "limits": status.limits.as_dict()}
             for lane, status in lane_statuses(svc.redis).items()}
    ready = all(lane["alive"] for lane in lanes.values())
    return jsonify({"ready": ready, "redis": "ok", "lanes": lanes}), 200 if ready else 503


@bp.get("/metrics")
@require("ops:read")
def metrics() -> Any:
    """Fleet-wide counters: an operator's view (scrape with a client-credentials token holding ops:read)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(services().redis, live_workers))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())
