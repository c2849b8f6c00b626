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
from jobs.model import Job
from jobs.store import JobStore
from orchestrator.shadow import ShadowObserver
from orchestrator.deliveries import DeliveryService
from orchestrator.service import Enqueuer, JobService, ServiceConfig
from ratelimit.limiter import Limiter
from ratelimit.logins import LoginFailureRules, LoginThrottle
from ratelimit.policy import RatePolicy
from routing.health import LaneHealth
from routing.predict import PredictConfig
from routing.signals import LaneSignals
from settings import Settings
from telemetry import rollups
from telemetry.logging import get_logger
from webhooks.config import guard_of
from webhooks.ssrf import Guard


class MissingEnqueuer:
    """Stands in when an app is built without a broker (tests of the HTTP surface): publishing fails,
    and the orchestrator leaves the attempt to its lease."""

    def enqueue(self, job: Job) -> None:
        raise RuntimeError("this app was built without an enqueuer")

    def revoke(self, task_id: str) -> None:
        pass


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    blocking_redis: redis.Redis
    enqueuer: Enqueuer

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
    def limiter(self) -> Limiter:
        """Moving-window limits on the app's Redis, sharing its connection pool (and timeouts)."""
        return Limiter.on_redis(self.settings.redis_url, self.redis.connection_pool)

    @cached_property
    def rate_policy(self) -> RatePolicy | None:
        """The request limits (defaults and per-tenant overrides); None when QGATE_RATE_LIMITS=off."""
        settings = self.settings
        if not settings.rate_limits_enabled:
            return None
        return RatePolicy.load(settings.default_rates, settings.rate_limits_file)

    @cached_property
    def login_throttle(self) -> LoginThrottle:
        settings = self.settings
        return LoginThrottle(self.limiter, LoginFailureRules(settings.login_failure_window_s,
                                                             settings.login_failures_per_client,
                                                             settings.login_failures_per_address))

    @cached_property
    def lane_health(self) -> LaneHealth:
        return LaneHealth(self.redis)

    @cached_property
    def lane_signals(self) -> LaneSignals:
        return LaneSignals(self.redis, PredictConfig.of(self.settings))

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.settings.job_ttl_s,
                        [*self.lane_signals.observers(), ShadowObserver(self.settings.history_days)])

    @cached_property
    def callback_guard(self) -> Guard:
        return guard_of(self.settings)

    @cached_property
    def deliveries(self) -> DeliveryService:
        """Only ``redeliver`` runs here: deliveries themselves run on the webhook worker."""
        return DeliveryService(self.jobs, log=get_logger("qgate.api"))

    @cached_property
    def job_service(self) -> JobService:
        return JobService(self.jobs, self.enqueuer, ServiceConfig.of(self.settings), self.lane_health,
                          get_logger("qgate.api"), self.lane_signals)


def services() -> Services:
    return current_app.extensions["qgate"]


def build_services(settings: Settings, enqueuer: Enqueuer | None = None) -> Services:
    rollups.configure(settings.history_days)
    return Services(settings, connect(settings.redis_url), connect(settings.redis_url, blocking=True),
                    enqueuer or MissingEnqueuer())
