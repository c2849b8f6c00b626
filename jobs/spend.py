"""QPU spend allowances per tenant (and per ``metadata.business_unit``): USD and shots per UTC day and month.

A qpu attempt reserves its estimate before it is enqueued, in the same Lua script that admits the job and
writes its first task message (``JobStore.create``'s guards): the script checks every allowance the job
falls under (spent + reserved + estimate <= allowance) and only then runs the writes, which include the
reservation itself. No interleaving of concurrent submits can therefore reserve past an allowance.

When the attempt ends, the transition that concludes it (a ``JobStore`` observer, same MULTI) settles the
reservation: an attempt that started on the device counts as spent, at the provider-reported usage when
the solver reports it (``solver_details.shots``, ``solver_details.usd``) or else at its estimate; one that
never started (cancelled or expired in the queue, refused by the worker as skipped) is released.

Keys (integers: USD as micro-dollars): ``qgate:spend:<sha256 of the scope>:d:<YYYYMMDD>`` and ``…:m:<YYYYMM>``
hashes with ``usd_reserved, usd_spent, shots_reserved, shots_spent``, expiring 3 and 40 days after they
start; ``qgate:spend:job:<job_id>`` the reservation of a job's qpu attempt; ``qgate:spend:limits`` the
allowances set by ``qgate limits set`` (they override the policy data's, field by field).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from audit.channel import emit

LIMITS_KEY = "qgate:spend:limits"
FIELDS = ("usd_per_day", "shots_per_day", "usd_per_month", "shots_per_month")
MICRO = 1_000_000
DAY_TTL_S = 3 * 86400
MONTH_TTL_S = 40 * 86400
CACHE_S = 1.0


class SpendError(ValueError):
    """An allowance that cannot be read."""


@dataclass(frozen=True)
class Allowance:
    usd_per_day: float | None = None
    shots_per_day: int | None = None
    usd_per_month: float | None = None
    shots_per_month: int | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any], what: str) -> "Allowance":
        unknown = sorted(set(values) - set(FIELDS) - {"business_units"})
        if unknown:
            raise SpendError(f"{what}: unknown allowance {unknown[0]!r} (known: {', '.join(FIELDS)})")
        out = {}
        for name in FIELDS:
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:
                raise SpendError(f"{what}.{name}: want a number from 0")
            out[name] = int(value) if name.startswith("shots") else float(value)
        return cls(**out)

    def over(self, other: "Allowance") -> "Allowance":
        """This allowance's fields where set, else ``other``'s."""
        return Allowance(**{f: getattr(self, f) if getattr(self, f) is not None else getattr(other, f)
                            for f in FIELDS})

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in FIELDS)


@dataclass(frozen=True)
class Guard:
    """One allowance one reservation must fit: ``amount`` more of ``unit`` in ``key``, up to ``limit``."""

    key: str
    unit: str  # "usd" (micro-dollars) or "shots"
    amount: int
    limit: int
    window: str  # "today" or "this month"
    scope: str

    def argv(self) -> list[Any]:
        return [self.key, f"{self.unit}_reserved", f"{self.unit}_spent", self.amount, self.limit]


def scope_of(tenant: str, business_unit: str | None = None) -> str:
    return f"{tenant}/{business_unit}" if business_unit else tenant


def usage_key(scope: str, window: str, period: str) -> str:
    digest = hashlib.sha256(scope.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"qgate:spend:{digest}:{window}:{period}"


def reservation_key(job_id: str) -> str:
    return f"qgate:spend:job:{job_id}"


def periods(now: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return {"d": moment.strftime("%Y%m%d"), "m": moment.strftime("%Y%m")}


def seconds_to_next(window: str, now: float) -> int:
    """Seconds until the UTC day (``d``) or month (``m``) that holds ``now`` ends."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    if window == "d":
        end = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc).timestamp() + 86400
    else:
        days = calendar.monthrange(moment.year, moment.month)[1]
        end = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc).timestamp() + days * 86400
    return max(1, int(end - now) + 1)


def _money(micro: int) -> str:
    return f"${micro / MICRO:.2f}"


class SpendBook:
    """Allowances (``qgate limits set`` over the policy data's), guards for a reservation, and usage."""

    def __init__(self, redis: Any, policy_tenants: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.redis = redis
        self.policy_tenants = policy_tenants or (lambda: {})
        self._cached: tuple[float, dict[str, Allowance]] | None = None

    # -- allowances ------------------------------------------------------------------------------------
    def set(self, tenant: str, business_unit: str | None, allowance: Allowance) -> Allowance:
        """Store the fields given (others keep their value) and return the scope's stored allowance."""
        scope = scope_of(tenant, business_unit)
        stored = self._stored().get(scope, Allowance())
        merged = allowance.over(stored)
        self.redis.hset(LIMITS_KEY, scope, json.dumps({k: v for k, v in asdict(merged).items() if v is not None}))
        self._cached = None
        return merged

    def _stored(self) -> dict[str, Allowance]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE_S:
            return self._cached[1]
        stored = {}
        for scope, raw in self.redis.hgetall(LIMITS_KEY).items():
            try:
                stored[scope] = Allowance.of(json.loads(raw), scope)
            except (ValueError, SpendError):
                continue
        self._cached = (now, stored)
        return stored

    def policy_allowances(self) -> dict[str, Allowance]:
        out = {}
        for tenant, entry in (self.policy_tenants() or {}).items():
            spend = entry.get("qpu_spend") if isinstance(entry, dict) else None
            if not isinstance(spend, dict):
                continue
            out[tenant] = Allowance.of(spend, f"tenants.{tenant}.qpu_spend")
            for unit, values in (spend.get("business_units") or {}).items():
                out[scope_of(tenant, unit)] = Allowance.of(values, f"tenants.{tenant}.qpu_spend.business_units.{unit}")
        return out

    def allowances(self, tenant: str | None = None) -> dict[str, Allowance]:
        """Every scope's allowance (of ``tenant`` only, when given): the CLI's fields over the policy's."""
        policy, stored = self.policy_allowances(), self._stored()
        scopes = set(policy) | set(stored)
        if tenant is not None:
            scopes = {s for s in scopes if s == tenant or s.startswith(tenant + "/")}
        out = {s: stored.get(s, Allowance()).over(policy.get(s, Allowance())) for s in sorted(scopes)}
        return {s: a for s, a in out.items() if not a.empty}

    # -- reservations ----------------------------------------------------------------------------------
    def guards(self, tenant: str, business_unit: str | None, usd: float, shots: int,
               now: float | None = None) -> list[Guard]:
        now = time.time() if now is None else now
        found = self.allowances(tenant)
        names = {"d": "today", "m": "this month"}
        out = []
        for scope in [tenant] + ([scope_of(tenant, business_unit)] if business_unit else []):
            allowance = found.get(scope)
            if allowance is None:
                continue
            for window, period in periods(now).items():
                suffix = "day" if window == "d" else "month"
                usd_limit = getattr(allowance, f"usd_per_{suffix}")
                shot_limit = getattr(allowance, f"shots_per_{suffix}")
                key = usage_key(scope, window, period)
                if usd_limit is not None:
                    out.append(Guard(key, "usd", round(usd * MICRO), round(usd_limit * MICRO), names[window], scope))
                if shot_limit is not None:
                    out.append(Guard(key, "shots", int(shots), int(shot_limit), names[window], scope))
        return out

    def used(self, guard: Guard) -> int:
        values = self.redis.hmget(guard.key, [f"{guard.unit}_reserved", f"{guard.unit}_spent"])
        return sum(int(v or 0) for v in values)

    def shortfall(self, guards: list[Guard]) -> tuple[Guard, str] | None:
        """The first guard the reservation does not fit now, with the plan's reason (read, not reserved)."""
        for guard in guards:
            used = self.used(guard)
            if used + guard.amount > guard.limit:
                return guard, reason(guard, used)
        return None

    def reserve(self, pipe: Any, job_id: str, tenant: str, guards: list[Guard], ttl_s: int) -> None:
        """The reservation's writes, queued on the admission script's pipeline (run only if every guard fits)."""
        usd = next((g.amount for g in guards if g.unit == "usd"), 0)
        shots = next((g.amount for g in guards if g.unit == "shots"), 0)
        keys = sorted({g.key for g in guards})
        for key in keys:
            pipe.hincrby(key, "usd_reserved", usd)
            pipe.hincrby(key, "shots_reserved", shots)
            pipe.expire(key, DAY_TTL_S if ":d:" in key else MONTH_TTL_S)
        pipe.set(reservation_key(job_id), json.dumps({"usd": usd, "shots": shots, "keys": keys, "tenant": tenant}),
                 ex=ttl_s)

    # -- what the endpoint shows -----------------------------------------------------------------------
    def report(self, tenant: str | None, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        rows = []
        for scope, allowance in self.allowances(tenant).items():
            owner, _, unit = scope.partition("/")
            for window, period in periods(now).items():
                suffix = "day" if window == "d" else "month"
                values = self.redis.hgetall(usage_key(scope, window, period))
                for kind in ("usd", "shots"):
                    limit = getattr(allowance, f"{kind}_per_{suffix}")
                    if limit is None:
                        continue
                    scale = MICRO if kind == "usd" else 1
                    reserved = int(values.get(f"{kind}_reserved", 0)) / scale
                    spent = int(values.get(f"{kind}_spent", 0)) / scale
                    rows.append({"tenant": owner, "business_unit": unit or None, "unit": kind,
                                 "window": suffix, "period": period, "allowance": limit, "reserved": reserved,
                                 "spent": spent, "left": max(0, round(limit - reserved - spent, 6)),
                                 "resets_in_s": seconds_to_next(window, now)})
        return rows


def reason(guard: Guard, used: int) -> str:
    """``quota: $3.20 of $5.00 left today, estimate $4.10`` (or in shots)."""
    left = max(0, guard.limit - used)
    where = "" if "/" not in guard.scope else f" for {guard.scope.split('/', 1)[1]}"
    if guard.unit == "usd":
        return f"quota: {_money(left)} of {_money(guard.limit)} left {guard.window}{where}, estimate {_money(guard.amount)}"
    return f"quota: {left} of {guard.limit} shots left {guard.window}{where}, estimate {guard.amount}"


def _leases(job: Any) -> list[Any]:
    """The attempts in flight: the fallback chain's one, or a portfolio's racing ones."""
    if job is None:
        return []
    return [*([job.current] if job.current is not None else []), *(getattr(job, "racing", None) or [])]


def _qpu_lease(job: Any) -> Any:
    return next((lease for lease in _leases(job) if lease.lane == "qpu"), None)


class SpendSettlement:
    """A ``JobStore`` observer: settles or releases a qpu attempt's reservation in the MULTI that ends it."""

    def prepare(self, pipe: Any, before: Any, events: list[Any]) -> Any:
        lease = _qpu_lease(before)
        if lease is None:
            return None
        raw = pipe.get(reservation_key(before.job_id))
        return {**json.loads(raw), "_lease": lease} if raw else None

    def observe(self, pipe: Any, before: Any, job: Any, events: list[Any], now: float, prepared: Any = None) -> None:
        if not prepared or before is None:
            return
        lease = prepared["_lease"]
        n = lease.n
        if any(item.n == n for item in _leases(job)):
            return  # still in flight (started, or nothing changed for this attempt)
        attempt = next((a for a in job.attempts if a.n == n and a.lane == lease.lane), None)
        ran = lease.started_at is not None and (attempt is None or attempt.outcome != "skipped")
        usd, shots = int(prepared.get("usd", 0)), int(prepared.get("shots", 0))
        spent_usd, spent_shots, basis = 0, 0, "released: the attempt never ran"
        if ran:
            spent_usd, spent_shots, basis = usd, shots, "estimate"
            served_by_qpu = (job.solver or {}).get("lane", "qpu") == "qpu"  # not a portfolio's losing attempt
            details = (job.provenance.model_dump().get("solver_details") or {}) if attempt and \
                attempt.outcome == "succeeded" and served_by_qpu else {}
            if isinstance(details.get("shots"), int) and not isinstance(details.get("shots"), bool):
                spent_shots, basis = details["shots"], "provider-reported shots"
            if isinstance(details.get("usd"), (int, float)) and not isinstance(details.get("usd"), bool):
                spent_usd, basis = round(details["usd"] * MICRO), "provider-reported usage"
        for key in prepared.get("keys", []):
            pipe.hincrby(key, "usd_reserved", -usd)
            pipe.hincrby(key, "shots_reserved", -shots)
            if ran:
                pipe.hincrby(key, "usd_spent", spent_usd)
                pipe.hincrby(key, "shots_spent", spent_shots)
        pipe.delete(reservation_key(job.job_id))
        emit(pipe, "spend.settled" if ran else "spend.released", job_id=job.job_id, tenant=job.tenant,
             attempt=n, reserved_usd=usd / MICRO, reserved_shots=shots, spent_usd=spent_usd / MICRO,
             spent_shots=spent_shots, basis=basis)
