"""The objects a request needs, built once per app from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import redis
from flask import current_app

from api.clients import ClientStore
from api.keys import SigningKey, load_signing_key
from api.tokens import ExternalIssuer, TokenVerifier, jwks_of
from jobs.connection import connect
from jobs.store import JobStore
from routing.health import LaneHealth
from settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    blocking_redis: redis.Redis

    @cached_property
    def signing_key(self) -> SigningKey:
        return load_signing_key(self.settings.signing_key_path)

    @cached_property
    def verifier(self) -> TokenVerifier:
        settings = self.settings
        external = None
        if settings.trusted_jwks_url and settings.trusted_issuer:
            external = ExternalIssuer(settings.trusted_issuer, settings.trusted_jwks_url)
        return TokenVerifier(jwks_of(self.signing_key), settings.issuer, settings.audience, external=external)

    @cached_property
    def clients(self) -> ClientStore:
        return ClientStore(self.redis)

    @cached_property
    def lane_health(self) -> LaneHealth:
        return LaneHealth(self.redis)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.settings.job_ttl_s)


def services() -> Services:
    return current_app.extensions["qgate"]


def build_services(settings: Settings) -> Services:
    return Services(settings, connect(settings.redis_url), connect(settings.redis_url, blocking=True))
