"""The objects a request needs, built once per app from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from functools import cached_property
import redis
from flask import current_app

from api.clients import ClientStore
from api.keys import SigningKey, load_signing_key
from api.tokens import ExternalIssuer, TokenVerifier, jwks_of
from jobs.connection import connect
from jobs.model import Job
from jobs.spend import SpendBook, SpendError, SpendSettlement
from jobs.store import JobStore
from orchestrator.evidence import PortfolioEvidence
from orchestrator.shadow import ShadowObserver
from orchestrator.deliveries import DeliveryService
from orchestrator.service import Enqueuer, JobService, ServiceConfig
from ratelimit.limiter import Limiter
from ratelimit.logins import LoginFailureRules, LoginThrottle
from policy.engine import PolicyBundle, PolicyError
from policy.source import PolicySource
from ratelimit.policy import PolicyError as RateError, RatePolicy, parse_overrides
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
    _rates: Any = None  # (policy bundle sha256, RatePolicy) of the last rates built

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

    @property
    def rate_policy(self) -> RatePolicy | None:
        """The request limits (defaults, QGATE_RATE_LIMITS_FILE's overrides, then each tenant's ``rates`` in
        the policy data); None when QGATE_RATE_LIMITS=off. Rebuilt when the policy in force changes."""
        settings = self.settings
        if not settings.rate_limits_enabled:
            return None
        source = self.policy_source
        bundle = source.current() if source is not None else None
        sha = bundle.sha256 if bundle is not None else None
        if self._rates is None or self._rates[0] != sha:
            self._rates = (sha, self._build_rates(bundle))
        return self._rates[1]

    def _build_rates(self, bundle: PolicyBundle | None) -> RatePolicy:
        settings = self.settings
        overrides: dict[str, dict[str, Any]] = {}
        if settings.rate_limits_file is not None:
            try:
                text = settings.rate_limits_file.read_text()
            except OSError as exc:
                raise RateError(f"{settings.rate_limits_file}: cannot read ({exc.strerror})") from None
            overrides = parse_overrides(text, str(settings.rate_limits_file))
        for tenant, rates in policy_rates(bundle).items():
            overrides[tenant] = {**overrides.get(tenant, {}), **rates}
        return RatePolicy.build(settings.default_rates, overrides)

    @cached_property
    def policy_source(self) -> PolicySource | None:
        """The policy in force (QGATE_POLICY_FILE with QGATE_POLICY_DATA), reloaded when they change; None
        when QGATE_POLICY=off. Raises PolicyError when no good policy can be loaded: the ingress does not start."""
        settings = self.settings
        if not settings.policy_enabled:
            return None

        def validate(bundle: PolicyBundle) -> None:  # the data's rates must parse, or the bundle is not loaded
            try:
                RatePolicy.build(settings.default_rates, policy_rates(bundle))
                SpendBook(None, lambda: policy_tenants(bundle)).policy_allowances()
            except (RateError, SpendError) as exc:
                raise PolicyError(f"policy data: {exc}") from None

        return PolicySource(settings.policy_file, settings.policy_data_file, redis=self.redis,
                            log=get_logger("qgate.policy"), poll_s=settings.policy_poll_s, validate=validate,
                            compile_timeout_s=settings.policy_compile_timeout_s)

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
                        [*self.lane_signals.observers(), SpendSettlement(), ShadowObserver(self.settings.history_days),
                         PortfolioEvidence(self.settings.history_days)])

    @cached_property
    def spend(self) -> SpendBook:
        """QPU spend allowances: ``qgate limits set``'s over the policy data's ``qpu_spend``."""
        source = self.policy_source
        return SpendBook(self.redis, (lambda: policy_tenants(source.current())) if source is not None else None)

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
                          get_logger("qgate.api"), self.lane_signals, policy=self.policy_source, spend=self.spend)


def policy_tenants(bundle: PolicyBundle | None) -> dict[str, Any]:
    tenants = bundle.data.get("qgate", {}).get("tenants", {}) if bundle is not None else {}
    return tenants if isinstance(tenants, dict) else {}


def policy_rates(bundle: PolicyBundle | None) -> dict[str, dict[str, Any]]:
    """Each tenant's ``rates`` in the policy data (``{"tenants": {"acme": {"rates": {"solve_per_tenant":
    "1200/minute"}}}}``), in QGATE_RATE_LIMITS_FILE's notation."""
    if bundle is None:
        return {}
    tenants = bundle.data.get("qgate", {}).get("tenants", {})
    if not isinstance(tenants, dict):
        raise PolicyError("policy data: qgate.tenants must be an object")
    out = {}
    for tenant, entry in tenants.items():
        rates = entry.get("rates") if isinstance(entry, dict) else None
        if rates is not None:
            if not isinstance(rates, dict):
                raise PolicyError(f"policy data: qgate.tenants.{tenant}.rates must be an object")
            out[tenant] = rates
    return out


def services() -> Services:
    return current_app.extensions["qgate"]


def build_services(settings: Settings, enqueuer: Enqueuer | None = None) -> Services:
    rollups.configure(settings.history_days)
    return Services(settings, connect(settings.redis_url), connect(settings.redis_url, blocking=True),
                    enqueuer or MissingEnqueuer())
