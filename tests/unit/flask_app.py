"""The real Flask app for in-process tests: its Redis clients swapped for fakeredis (the URL points at a
closed port as a tripwire) and the rate limiter on memory (its moving window runs Lua fakeredis lacks)."""

from __future__ import annotations

from pathlib import Path

import fakeredis
from flask import Flask
from limits.storage import MemoryStorage

from api.app import create_app
from ratelimit.limiter import Limiter
from settings import Settings


def fake_redis_app(base: Path) -> Flask:
    settings = Settings(redis_url="redis://127.0.0.1:9/0", var_dir=base / "var",
                        audit_path=base / "var" / "audit" / "audit.log")
    app = create_app(settings)
    svc = app.extensions["qgate"]
    server = fakeredis.FakeServer()
    svc.redis = fakeredis.FakeRedis(server=server, decode_responses=True)
    svc.blocking_redis = fakeredis.FakeRedis(server=server, decode_responses=True)
    svc.limiter = Limiter(MemoryStorage())
    return app
