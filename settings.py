"""All configuration, read from the environment once into one immutable object.

Every setting has a default that serves a single machine; see the README's configuration table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ratelimit.policy import PolicyError, Rate
from routing.canary import CanaryConfig
from routing.faults import FaultSpecError, LaneFault, parse_spec  # noqa: F401 (LaneFault re-exported)
from solvers.registry import LANES  # noqa: F401 (one definition of the lanes, re-exported)


class SettingsError(ValueError):
    """A setting in the environment cannot be read; the message names it."""


def parse_faults(spec: str) -> dict[str, LaneFault]:
    """Parse ``QGATE_FAULTS`` such as ``qpu.fail_rate=1.0,sim.delay_ms=3000,qpu.delay_jitter=0.5``."""
    try:
        return parse_spec(spec)
    except FaultSpecError as exc:
        raise SettingsError(f"QGATE_FAULTS: {exc}") from None


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _required_with(env: dict[str, str], name: str, other: str) -> str | None:
    """A setting that must be given exactly when ``other`` is."""
    value = env.get(name) or None
    if bool(value) != bool(env.get(other)):
        raise SettingsError(f"{name} and {other} go together: set both or neither")
    return value


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _switch(env: dict[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise SettingsError(f"{name} must be on or off, got {value!r}")
    return value in ("on", "1", "true")


def _rate(env: dict[str, str], name: str, default: str) -> str:
    """A rate such as ``600/minute`` or ``5 per 10 seconds``, checked here so that a bad one names itself."""
    value = env.get(name) or default
    try:
        Rate.parse(value, name)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    return value


RETIRED = {"QGATE_RATE_LIMIT_PER_MINUTE": "QGATE_RATE_SOLVE_PER_TENANT (e.g. 600/minute) or QGATE_RATE_LIMITS=off"}


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _positive(env: dict[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number, got {env.get(name)!r}")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no", ""):
        raise SettingsError(f"{name} must be 1 or 0, got {value!r}")
    return value in ("1", "true", "yes")


def _path(env: dict[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


def _fraction(env: dict[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not 0 < value <= 1:
        raise SettingsError(f"{name} must be in (0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = 8000
    var_dir: Path = Path("var")
    audit_path: Path = Path("var/audit/audit.log")
    sync_threshold_ms: int = 1000
    default_budget_ms: int = 5000
    max_budget_ms: int = 3_600_000
    max_body_bytes: int = 8 * 1024 * 1024
    issuer: str = "qgate"
    audience: str = "qgate-api"
    token_ttl_s: int = 900
    rate_limits_enabled: bool = True
    rate_solve_per_tenant: str = "600/minute"
    rate_solve_per_client: str = "300/minute"
    rate_read_per_tenant: str = "6000/minute"
    rate_read_per_client: str = "3000/minute"
    rate_limits_file: Path | None = None
    login_failure_window_s: int = 60
    login_failures_per_client: int = 10
    login_failures_per_address: int = 30
    trusted_proxies: int = 0
    max_active_jobs_per_tenant: int = 1000
    job_ttl_s: int = 7 * 24 * 3600
    lease_grace_ms: int = 2000
    worker_heartbeat_s: int = 5
    faults: dict[str, LaneFault] = field(default_factory=dict)
    qpu_provider: str = "emulated"
    qpu_region: str = ""  # where the qpu provider runs, for residency rules (default: routing.policy.PROVIDER_REGIONS)
    policy_enabled: bool = True
    policy_file: Path = Path(__file__).parent / "policy" / "qgate.rego"
    policy_data_file: Path = Path(__file__).parent / "policy" / "data.json"
    policy_poll_s: float = 1.0
    policy_compile_timeout_s: float = 5.0  # a new policy compiled longer (in its child process) is refused
    qpu_backend: str = "fake_manila"
    qpu_queue_delay_ms: int = 0
    qpu_failure_rate: float = 0.0
    sim_max_qubits: int = 24
    standard_tier_max_usd: float = 0.0
    qpu_price_per_task_usd: float = 0.0
    qpu_price_per_shot_usd: float = 0.0
    jwt_key_file: Path | None = None
    trusted_jwks_url: str | None = None
    trusted_issuer: str | None = None
    audit_origin: str = "qgate.local/audit"
    checkpoint_seconds: float = 5.0
    audit_key_file: Path | None = None
    predictive: bool = True
    predict_quantile: float = 0.9
    predict_min_samples: int = 3
    tenant_queue_share: float = 0.5
    telemetry_alpha: float = 0.2
    telemetry_stale_s: float = 60.0
    breakers: bool = True
    breaker_window: int = 10
    breaker_failure_rate: float = 0.5
    breaker_consecutive: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_probes: int = 2
    canary_seconds: float = 0.0
    canary_min_fidelity: float = 0.75
    canary_qubits: int = 3
    canary_shots: int = 1000
    history_days: int = 14
    console_key_file: Path | None = None
    webhook_retry_hours: float = 24.0
    webhook_backoff_s: float = 5.0
    webhook_backoff_max_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    webhook_dns_timeout_s: float = 2.0
    webhook_allow_http: bool = False
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_ca_file: Path | None = None
    webhook_key_file: Path | None = None
    webhook_hosts_file: Path | None = None
    webhook_secret_grace_hours: float = 24.0

    @property
    def webhook_key_path(self) -> Path:
        """The key that seals webhook secrets in Redis: keep it off the Redis host's backups."""
        return self.webhook_key_file or self.var_dir / "keys" / "webhook-secrets.key"

    @property
    def signing_key_path(self) -> Path:
        """The issuer's key: a shared ``QGATE_JWT_KEY_FILE`` when several ingress hosts must agree."""
        return self.jwt_key_file or self.var_dir / "keys" / "jwt-es256.pem"

    @property
    def console_key_path(self) -> Path:
        """The key that signs the console's session cookies: a shared ``QGATE_CONSOLE_KEY_FILE`` when several
        ingress hosts serve the console, else a random key created on first start under the var directory."""
        return self.console_key_file or self.var_dir / "keys" / "console-session.key"

    @property
    def audit_keys_dir(self) -> Path:
        return self.var_dir / "keys" / "audit"

    @property
    def default_rates(self) -> dict[str, str]:
        """The four request rates by their names in a rate table (and in QGATE_RATE_LIMITS_FILE)."""
        return {"solve_per_tenant": self.rate_solve_per_tenant, "solve_per_client": self.rate_solve_per_client,
                "read_per_tenant": self.rate_read_per_tenant, "read_per_client": self.rate_read_per_client}

    def fault(self, lane: str) -> LaneFault:
        return self.faults.get(lane, LaneFault())

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        for name, replacement in RETIRED.items():
            if env.get(name):
                raise SettingsError(f"{name} is retired: use {replacement}")
        var_dir = Path(env.get("QGATE_VAR_DIR", "var"))
        return cls(
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            host=env.get("HOST") or cls.host,
            port=_int(env, "PORT", cls.port, 1),
            var_dir=var_dir,
            audit_path=Path(env.get("QGATE_AUDIT_PATH") or var_dir / "audit" / "audit.log"),
            sync_threshold_ms=_int(env, "QGATE_SYNC_THRESHOLD_MS", cls.sync_threshold_ms),
            default_budget_ms=_int(env, "QGATE_DEFAULT_BUDGET_MS", cls.default_budget_ms, 1),
            max_budget_ms=_int(env, "QGATE_MAX_BUDGET_MS", cls.max_budget_ms, 1),
            max_body_bytes=_int(env, "QGATE_MAX_BODY_BYTES", cls.max_body_bytes, 1024),
            issuer=env.get("QGATE_ISSUER") or cls.issuer,
            audience=env.get("QGATE_AUDIENCE") or cls.audience,
            token_ttl_s=_int(env, "QGATE_TOKEN_TTL_S", cls.token_ttl_s, 1),
            rate_limits_enabled=_switch(env, "QGATE_RATE_LIMITS", cls.rate_limits_enabled),
            rate_solve_per_tenant=_rate(env, "QGATE_RATE_SOLVE_PER_TENANT", cls.rate_solve_per_tenant),
            rate_solve_per_client=_rate(env, "QGATE_RATE_SOLVE_PER_CLIENT", cls.rate_solve_per_client),
            rate_read_per_tenant=_rate(env, "QGATE_RATE_READ_PER_TENANT", cls.rate_read_per_tenant),
            rate_read_per_client=_rate(env, "QGATE_RATE_READ_PER_CLIENT", cls.rate_read_per_client),
            rate_limits_file=Path(env["QGATE_RATE_LIMITS_FILE"]) if env.get("QGATE_RATE_LIMITS_FILE") else None,
            login_failure_window_s=_int(env, "QGATE_LOGIN_FAILURE_WINDOW_S", cls.login_failure_window_s, 1),
            login_failures_per_client=_int(env, "QGATE_LOGIN_FAILURES_PER_CLIENT", cls.login_failures_per_client, 1),
            login_failures_per_address=_int(env, "QGATE_LOGIN_FAILURES_PER_ADDRESS",
                                            cls.login_failures_per_address, 1),
            trusted_proxies=_int(env, "QGATE_TRUSTED_PROXIES", cls.trusted_proxies),
            max_active_jobs_per_tenant=_int(env, "QGATE_MAX_ACTIVE_JOBS", cls.max_active_jobs_per_tenant),
            job_ttl_s=_int(env, "QGATE_JOB_TTL_S", cls.job_ttl_s, 60),
            lease_grace_ms=_int(env, "QGATE_LEASE_GRACE_MS", cls.lease_grace_ms, 100),
            worker_heartbeat_s=_int(env, "QGATE_WORKER_HEARTBEAT_S", cls.worker_heartbeat_s, 1),
            faults=parse_faults(env.get("QGATE_FAULTS", "")),
            qpu_provider=_choice(env, "QGATE_QPU_PROVIDER", cls.qpu_provider, ("emulated", "ibm", "braket", "http")),
            qpu_region=env.get("QGATE_QPU_REGION", "").strip(),
            policy_enabled=env.get("QGATE_POLICY", "on").strip().lower() not in ("off", "0", "false", "no"),
            policy_file=Path(env["QGATE_POLICY_FILE"]) if env.get("QGATE_POLICY_FILE") else cls.policy_file,
            policy_data_file=(Path(env["QGATE_POLICY_DATA"]) if env.get("QGATE_POLICY_DATA")
                              else cls.policy_data_file),
            policy_poll_s=_float(env, "QGATE_POLICY_POLL_S", cls.policy_poll_s),
            policy_compile_timeout_s=_float(env, "QGATE_POLICY_COMPILE_TIMEOUT_S", cls.policy_compile_timeout_s),
            qpu_backend=env.get("QGATE_QPU_BACKEND") or cls.qpu_backend,
            qpu_queue_delay_ms=_int(env, "QGATE_QPU_QUEUE_DELAY_MS", cls.qpu_queue_delay_ms),
            qpu_failure_rate=_float(env, "QGATE_QPU_FAILURE_RATE", cls.qpu_failure_rate),
            sim_max_qubits=_int(env, "QGATE_SIM_MAX_QUBITS", cls.sim_max_qubits, 1),
            standard_tier_max_usd=_float(env, "QGATE_STANDARD_TIER_MAX_USD", cls.standard_tier_max_usd),
            qpu_price_per_task_usd=_float(env, "QGATE_QPU_PRICE_PER_TASK_USD", cls.qpu_price_per_task_usd),
            qpu_price_per_shot_usd=_float(env, "QGATE_QPU_PRICE_PER_SHOT_USD", cls.qpu_price_per_shot_usd),
            jwt_key_file=Path(env["QGATE_JWT_KEY_FILE"]) if env.get("QGATE_JWT_KEY_FILE") else None,
            trusted_jwks_url=env.get("QGATE_TRUSTED_JWKS_URL") or None,
            trusted_issuer=_required_with(env, "QGATE_TRUSTED_ISSUER", "QGATE_TRUSTED_JWKS_URL"),
            audit_origin=env.get("QGATE_AUDIT_ORIGIN") or cls.audit_origin,
            checkpoint_seconds=_float(env, "QGATE_CHECKPOINT_SECONDS", cls.checkpoint_seconds),
            audit_key_file=Path(env["QGATE_AUDIT_KEY_FILE"]) if env.get("QGATE_AUDIT_KEY_FILE") else None,
            history_days=_int(env, "QGATE_HISTORY_DAYS", cls.history_days, 1),
            console_key_file=Path(env["QGATE_CONSOLE_KEY_FILE"]) if env.get("QGATE_CONSOLE_KEY_FILE") else None,
            webhook_retry_hours=_positive(env, "QGATE_WEBHOOK_RETRY_HOURS", cls.webhook_retry_hours),
            webhook_backoff_s=_positive(env, "QGATE_WEBHOOK_BACKOFF_S", cls.webhook_backoff_s),
            webhook_backoff_max_s=_positive(env, "QGATE_WEBHOOK_BACKOFF_MAX_S", cls.webhook_backoff_max_s),
            webhook_timeout_s=_positive(env, "QGATE_WEBHOOK_TIMEOUT_S", cls.webhook_timeout_s),
            webhook_dns_timeout_s=_positive(env, "QGATE_WEBHOOK_DNS_TIMEOUT_S", cls.webhook_dns_timeout_s),
            webhook_allow_http=_flag(env, "QGATE_WEBHOOK_ALLOW_HTTP"),
            webhook_allow_hosts=tuple(filter(None, (h.strip() for h in
                                                    env.get("QGATE_WEBHOOK_ALLOW_HOSTS", "").split(",")))),
            webhook_ca_file=_path(env, "QGATE_WEBHOOK_CA_FILE"),
            webhook_key_file=_path(env, "QGATE_WEBHOOK_KEY_FILE"),
            webhook_hosts_file=_path(env, "QGATE_WEBHOOK_HOSTS_FILE"),
            webhook_secret_grace_hours=_positive(env, "QGATE_WEBHOOK_SECRET_GRACE_HOURS",
                                                 cls.webhook_secret_grace_hours),
            predictive=_switch(env, "QGATE_PREDICTIVE", cls.predictive),
            predict_quantile=_fraction(env, "QGATE_PREDICT_QUANTILE", cls.predict_quantile),
            predict_min_samples=_int(env, "QGATE_PREDICT_MIN_SAMPLES", cls.predict_min_samples, 1),
            tenant_queue_share=_fraction(env, "QGATE_TENANT_QUEUE_SHARE", cls.tenant_queue_share),
            telemetry_alpha=_fraction(env, "QGATE_TELEMETRY_ALPHA", cls.telemetry_alpha),
            telemetry_stale_s=_float(env, "QGATE_TELEMETRY_STALE_S", cls.telemetry_stale_s),
            breakers=_switch(env, "QGATE_BREAKERS", cls.breakers),
            breaker_window=_int(env, "QGATE_BREAKER_WINDOW", cls.breaker_window, 1),
            breaker_failure_rate=_fraction(env, "QGATE_BREAKER_FAILURE_RATE", cls.breaker_failure_rate),
            breaker_consecutive=_int(env, "QGATE_BREAKER_CONSECUTIVE", cls.breaker_consecutive, 1),
            breaker_cooldown_s=_float(env, "QGATE_BREAKER_COOLDOWN_S", cls.breaker_cooldown_s),
            breaker_probes=_int(env, "QGATE_BREAKER_PROBES", cls.breaker_probes, 1),
            canary_seconds=_float(env, "QGATE_CANARY_SECONDS", cls.canary_seconds),
            canary_min_fidelity=_fraction(env, "QGATE_CANARY_MIN_FIDELITY", cls.canary_min_fidelity),
            canary_qubits=_int(env, "QGATE_CANARY_QUBITS", cls.canary_qubits, 2),
            canary_shots=_int(env, "QGATE_CANARY_SHOTS", cls.canary_shots, 100),
        )

    def canary(self) -> CanaryConfig:
        return CanaryConfig(period_s=max(self.canary_seconds, 0.0), min_fidelity=self.canary_min_fidelity,
                            qubits=min(self.canary_qubits, 16), shots=self.canary_shots)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, created once on first use."""
    return Settings.from_env()
