"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from api.auth import require
from api.errors import ApiError, bad_query
from api.openapi import openapi_document
from api.services import services
from jobs.model import iso
from routing import canary
from routing.breaker import Breaker, breaker_key
from routing.health import lane_statuses, live_workers
from solvers.registry import LANES
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


@bp.get("/api/v1/ops/lanes/<lane>/canary")
@require("ops:read")
def lane_canary(lane: str) -> Any:
    """The lane's calibration-canary readings (newest first) beside its breaker."""
    if lane not in LANES:
        raise ApiError(404, f"no lane {lane[:40]!r} (lanes: {', '.join(LANES)})")
    raw = request.args.get("limit", "60")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= CANARY_READINGS_MAX):
        raise bad_query("limit", f"limit: an integer from 1 to {CANARY_READINGS_MAX}")
    svc = services()
    config = svc.settings.canary()
    breaker = Breaker.loads(svc.redis.get(breaker_key(lane)))
    return jsonify({
        "lane": lane, "enabled": config.enabled and lane == "qpu", "period_s": config.period_s,
        "min_fidelity": config.min_fidelity, "qubits": config.qubits, "shots": config.shots,
        "breaker": {"state": breaker.state, "since": iso(breaker.since) if breaker.since else None,
                    "reason": breaker.reason or None},
        "readings": canary.series(svc.redis, lane, int(raw)),
    })


CANARY_READINGS_MAX = 1440


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())
