"""The webhook parts built from configuration values (the edges pass their Settings; this module does
not import the settings module, so the library stays free of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from webhooks.retry import RetryPolicy
from webhooks.sender import Sender
from webhooks.ssrf import Guard, HostsFileResolver, Policy, system_resolver
from webhooks.vault import SecretBox, WebhookSecrets, load_or_create_key

CLAIM_MARGIN_S = 5.0


class WebhookSettings(Protocol):
    webhook_retry_hours: float
    webhook_backoff_s: float
    webhook_backoff_max_s: float
    webhook_timeout_s: float
    webhook_dns_timeout_s: float
    webhook_allow_http: bool
    webhook_allow_hosts: tuple[str, ...]
    webhook_ca_file: Path | None
    webhook_hosts_file: Path | None
    webhook_secret_grace_hours: float

    @property
    def webhook_key_path(self) -> Path: ...


def guard_of(values: WebhookSettings) -> Guard:
    resolver = HostsFileResolver(values.webhook_hosts_file) if values.webhook_hosts_file else system_resolver
    policy = Policy.of(values.webhook_allow_hosts, values.webhook_allow_http, values.webhook_dns_timeout_s)
    return Guard(policy, resolver)


def connect_timeout_s(values: WebhookSettings) -> float:
    return min(5.0, values.webhook_timeout_s)


def sender_of(values: WebhookSettings) -> Sender:
    return Sender(values.webhook_ca_file, connect_timeout_s(values), values.webhook_timeout_s)


def secrets_of(values: WebhookSettings, redis: Any) -> WebhookSecrets:
    box = SecretBox(load_or_create_key(values.webhook_key_path))
    return WebhookSecrets(redis, box, values.webhook_secret_grace_hours * 3600)


def retry_of(values: WebhookSettings) -> RetryPolicy:
    return RetryPolicy(values.webhook_backoff_s, values.webhook_backoff_max_s, values.webhook_retry_hours * 3600)


def claim_s_of(values: WebhookSettings) -> float:
    """How long a claimed delivery is left to its task before it is due again: longer than any attempt
    (name resolution, connect and read timeouts) can take."""
    return values.webhook_dns_timeout_s + connect_timeout_s(values) + values.webhook_timeout_s + CLAIM_MARGIN_S
