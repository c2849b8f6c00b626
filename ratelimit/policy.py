"""What the limits are: a rate per request class (solve, read) and per subject (tenant, client), with
defaults and per-tenant overrides read from a JSON document.

Rates are written the way the `limits` library parses them ("600/minute", "5 per 10 seconds") and are
normalised to whole seconds, so that one rate always maps to the same storage key however it was written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.util import parse_many

CLASSES = ("solve", "read")
SUBJECTS = ("client", "tenant")  # checked in this order: a runaway client stops before its tenant's budget


class PolicyError(ValueError):
    """A rate or an overrides document cannot be read; the message names the offending entry."""


@dataclass(frozen=True)
class Rate:
    """``amount`` requests in any ``window_s`` seconds."""

    amount: int
    window_s: int

    @classmethod
    def parse(cls, text: str, what: str = "rate") -> "Rate":
        try:
            items = parse_many(text)
        except ValueError:
            raise PolicyError(f"{what}: cannot read {text!r} (want e.g. '600/minute' or '5 per 10 seconds')") from None
        if len(items) != 1:
            raise PolicyError(f"{what}: {text!r} holds {len(items)} rates; give exactly one")
        item = items[0]
        if item.amount < 1:
            raise PolicyError(f"{what}: {text!r} allows nothing; the amount must be at least 1")
        return cls(item.amount, item.get_expiry())

    def item(self, namespace: str) -> RateLimitItem:
        return RateLimitItemPerSecond(self.amount, self.window_s, namespace=namespace)

    @property
    def policy(self) -> str:
        """The rate as an IETF draft ``RateLimit-Policy`` item: ``600;w=60``."""
        return f"{self.amount};w={self.window_s}"

    def __str__(self) -> str:
        return f"{self.amount} per {self.window_s} s"


def digest(value: str) -> str:
    """Key parts are hashes, never what a caller sent (client ids and addresses are caller-chosen)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Limit:
    """One budget a request spends from: ``rate`` for ``subject`` (a tenant, a client id, an address)
    within ``namespace`` (solve, read, loginfail)."""

    namespace: str
    kind: str
    subject: str = field(repr=False)  # a client id or an address: kept out of logs and reprs
    rate: Rate

    def key_parts(self) -> tuple[str, str]:
        return self.kind, digest(self.subject)

    def describe(self) -> str:
        return f"{self.namespace} per {self.kind}: {self.rate}"


@dataclass(frozen=True)
class RateTable:
    """The four rates that apply to one tenant's requests."""

    solve_per_tenant: Rate
    solve_per_client: Rate
    read_per_tenant: Rate
    read_per_client: Rate

    def rate(self, request_class: str, subject: str) -> Rate:
        return getattr(self, f"{request_class}_per_{subject}")

    def with_overrides(self, overrides: Mapping[str, Any], what: str) -> "RateTable":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise PolicyError(f"{what}: unknown limit {unknown[0]!r} (known: {', '.join(sorted(known))})")
        changes = {}
        for name, text in overrides.items():
            if not isinstance(text, str):
                raise PolicyError(f"{what}.{name}: want a rate string such as '600/minute'")
            changes[name] = Rate.parse(text, f"{what}.{name}")
        return replace(self, **changes)


@dataclass(frozen=True)
class RatePolicy:
    """Default rates, and whole or partial tables for the tenants that differ."""

    defaults: RateTable
    tenants: Mapping[str, RateTable]

    def table(self, tenant: str) -> RateTable:
        return self.tenants.get(tenant, self.defaults)

    def limits(self, request_class: str, tenant: str, client_id: str) -> list[Limit]:
        """What one request of ``request_class`` spends, in the order it spends it (see SUBJECTS)."""
        if request_class not in CLASSES:
            raise ValueError(f"unknown request class {request_class!r}")
        table = self.table(tenant)
        subjects = {"client": client_id, "tenant": tenant}
        return [Limit(request_class, kind, subjects[kind], table.rate(request_class, kind)) for kind in SUBJECTS]

    @classmethod
    def load(cls, defaults: Mapping[str, str], overrides_file: Path | None) -> "RatePolicy":
        """The defaults with the overrides in ``overrides_file``, if any (see parse_overrides)."""
        if overrides_file is None:
            return cls.build(defaults)
        try:
            text = overrides_file.read_text()
        except OSError as exc:
            raise PolicyError(f"{overrides_file}: cannot read ({exc.strerror})") from None
        return cls.build(defaults, parse_overrides(text, str(overrides_file)))

    @classmethod
    def build(cls, defaults: Mapping[str, str], overrides: Mapping[str, Mapping[str, Any]] | None = None
              ) -> "RatePolicy":
        table = RateTable(**{name: Rate.parse(text, name) for name, text in defaults.items()})
        tenants = {tenant: table.with_overrides(rates, f"tenants.{tenant}")
                   for tenant, rates in (overrides or {}).items()}
        return cls(table, tenants)


def parse_overrides(text: str, source: str) -> dict[str, dict[str, Any]]:
    """Read a per-tenant overrides document::

        {"tenants": {"acme": {"solve_per_tenant": "1200/minute", "read_per_client": "50/second"}}}

    Only the limits a tenant changes need be listed; the others keep the defaults.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"{source}: not JSON ({exc})") from None
    if not isinstance(document, dict) or set(document) - {"tenants"}:
        raise PolicyError(f"{source}: want an object with the one key 'tenants'")
    tenants = document.get("tenants", {})
    if not isinstance(tenants, dict) or not all(isinstance(v, dict) for v in tenants.values()):
        raise PolicyError(f"{source}: 'tenants' must map each tenant to an object of limits")
    return tenants
