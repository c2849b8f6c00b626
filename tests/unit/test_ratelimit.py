"""The rate-limit core on the `limits` library's in-memory storage, under a clock the test moves.

The moving-window arithmetic is the library's; what is tested here is that qgate uses it so that no window
ever admits more than the limit (where a fixed window admits twice as much), spends limits in the right
order, reads its policy strictly, and tells the client the truth in its headers. The same core on a real
Redis is tested in tests/integration/test_rate_limits.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from ratelimit.limiter import KEY_PREFIX, Limiter, LimiterUnavailable, storage_key
from ratelimit.logins import LoginFailureRules, LoginThrottle, login_limits
from ratelimit.policy import Limit, PolicyError, Rate, RatePolicy, parse_overrides
from settings import Settings, SettingsError

DEFAULTS = {"solve_per_tenant": "6/minute", "solve_per_client": "4/minute",
            "read_per_tenant": "100/minute", "read_per_client": "50 per 30 seconds"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_700_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    return fake


def limit(amount: int, window_s: int, subject: str = "acme", kind: str = "tenant") -> Limit:
    return Limit("solve", kind, subject, Rate(amount, window_s))


def admitted(limiter: Limiter, limits: list[Limit], clock: Clock, at: float, count: int) -> int:
    clock.now = at
    return sum(limiter.acquire(limits).allowed for _ in range(count))


# --- the window edge ---------------------------------------------------------------------------------

def edge_burst(admit: Callable[[], bool], clock: Clock, n: int, window_s: int) -> list[tuple[float, bool]]:
    """One request, then n - 1 just before the window's edge and n just after it; (time, admitted) each."""
    start = clock.now
    schedule = [start] + [start + window_s - 0.5] * (n - 1) + [start + window_s + 0.5] * n
    out = []
    for at in schedule:
        clock.now = at
        out.append((at, admit()))
    return out


def most_in_any_window(outcomes: list[tuple[float, bool]], window_s: int) -> int:
    times = [at for at, ok in outcomes if ok]
    return max(sum(1 for t in times if start <= t < start + window_s) for start in times)


def test_a_burst_straddling_the_window_edge_never_passes_more_than_the_limit(clock: Clock) -> None:
    limiter, item = Limiter(MemoryStorage()), limit(5, 10)
    outcomes = edge_burst(lambda: limiter.acquire([item]).allowed, clock, 5, 10)
    assert most_in_any_window(outcomes, 10) <= 5
    assert sum(ok for _, ok in outcomes) == 6  # the first request left the window: one more fits


def test_the_same_burst_passes_a_fixed_window_twice_over(clock: Clock) -> None:
    """The schedule above is a real edge attack: the fixed window it replaces lets ~2N through."""
    fixed, item = FixedWindowRateLimiter(MemoryStorage()), Rate(5, 10).item("solve")
    outcomes = edge_burst(lambda: fixed.hit(item, "acme"), clock, 5, 10)
    assert most_in_any_window(outcomes, 10) == 9


def test_a_full_window_admits_again_once_its_oldest_entry_leaves(clock: Clock) -> None:
    limiter, item = Limiter(MemoryStorage()), limit(3, 10)
    start = clock.now
    assert admitted(limiter, [item], clock, start, 3) == 3
    assert admitted(limiter, [item], clock, start + 9.9, 1) == 0
    assert admitted(limiter, [item], clock, start + 10.1, 5) == 3


# --- several limits ----------------------------------------------------------------------------------

def test_the_client_limit_is_spent_first_and_a_refusal_there_spares_the_tenant(clock: Clock) -> None:
    limiter = Limiter(MemoryStorage())
    client_a, client_b, tenant = limit(2, 60, "a", "client"), limit(2, 60, "b", "client"), limit(3, 60)
    assert admitted(limiter, [client_a, tenant], clock, clock.now, 5) == 2
    refused = limiter.acquire([client_a, tenant])
    assert not refused.allowed and refused.limit == client_a
    assert limiter.check([tenant]).remaining == 1  # the client's refusals took nothing from the tenant
    assert limiter.acquire([client_b, tenant]).allowed
    by_tenant = limiter.acquire([client_b, tenant])
    assert not by_tenant.allowed and by_tenant.limit == tenant


def test_tenants_and_clients_have_their_own_windows(clock: Clock) -> None:
    policy = RatePolicy.build(DEFAULTS)
    limiter = Limiter(MemoryStorage())
    assert admitted(limiter, policy.limits("solve", "acme", "c1"), clock, clock.now, 10) == 4
    assert admitted(limiter, policy.limits("solve", "acme", "c2"), clock, clock.now, 10) == 2  # tenant: 6
    assert admitted(limiter, policy.limits("solve", "globex", "c3"), clock, clock.now, 10) == 4
    assert admitted(limiter, policy.limits("read", "acme", "c1"), clock, clock.now, 10) == 10  # reads apart


# --- what the client is told -------------------------------------------------------------------------

def test_headers_on_admission_name_the_limit_closest_to_running_out(clock: Clock) -> None:
    limiter = Limiter(MemoryStorage())
    limits = [limit(4, 60, "c1", "client"), limit(600, 60)]
    decision = limiter.acquire(limits)
    assert decision.allowed
    assert decision.headers() == {"RateLimit-Limit": "4", "RateLimit-Remaining": "3", "RateLimit-Reset": "60",
                                  "RateLimit-Policy": "4;w=60, 600;w=60"}


def test_a_refusal_says_when_to_come_back(clock: Clock) -> None:
    limiter, item = Limiter(MemoryStorage()), limit(2, 60)
    start = clock.now
    admitted(limiter, [item], clock, start, 1)
    admitted(limiter, [item], clock, start + 20, 1)
    clock.now = start + 30.5
    refused = limiter.acquire([item])
    headers = refused.headers()
    assert not refused.allowed
    assert headers["Retry-After"] == "30" and headers["RateLimit-Reset"] == "30"  # the first entry leaves at 60
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Limit"] == "2"
    clock.now = start + 59.9
    assert limiter.acquire([item]).headers()["Retry-After"] == "1"  # never 0
    clock.now = start + 60.1
    assert limiter.acquire([item]).allowed


# --- the failed-login throttle ----------------------------------------------------------------------

def test_login_failures_lock_a_client_id_and_an_address_without_spending_on_checks(clock: Clock) -> None:
    throttle = LoginThrottle(Limiter(MemoryStorage()), LoginFailureRules(window_s=60, per_client=3, per_address=5))
    for _ in range(10):
        assert throttle.refusal("qc_a", "10.0.0.1") is None  # checking is free
    for _ in range(3):
        throttle.count_failure("qc_a", "10.0.0.1")
    locked = throttle.refusal("qc_a", "10.0.0.2")
    assert locked is not None and locked.limit.kind == "client" and 1 <= locked.retry_after_s <= 60
    assert throttle.refusal("qc_b", "10.0.0.1") is None  # the address has 2 failures left
    throttle.count_failure("qc_b", "10.0.0.1")
    throttle.count_failure("qc_c", "10.0.0.1")
    by_address = throttle.refusal("qc_d", "10.0.0.1")
    assert by_address is not None and by_address.limit.kind == "addr"
    clock.now += 60.1
    assert throttle.refusal("qc_a", "10.0.0.1") is None


def test_keys_hold_hashes_never_what_the_caller_sent() -> None:
    odd = "qc_*:{evil}\r\n"
    keys = [storage_key(item) for item in login_limits(LoginFailureRules(), odd, "203.0.113.9")]
    assert all(key.startswith(KEY_PREFIX + ":loginfail/") for key in keys)
    assert not any(odd in key or "203.0.113.9" in key for key in keys)
    assert "203.0.113.9" not in repr(login_limits(LoginFailureRules(), odd, "203.0.113.9"))


def test_an_unreachable_store_is_reported_not_admitted() -> None:
    limiter = Limiter.on_redis("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with pytest.raises(LimiterUnavailable):
        limiter.acquire([limit(5, 60)])
    with pytest.raises(LimiterUnavailable):
        limiter.check([limit(5, 60)])


# --- the policy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("600/minute", Rate(600, 60)), ("5 per 10 seconds", Rate(5, 10)),
                                            ("2/second", Rate(2, 1)), ("1000/hour", Rate(1000, 3600))])
def test_rates_are_read_in_the_library_notation_and_kept_in_seconds(text: str, expected: Rate) -> None:
    assert Rate.parse(text) == expected


@pytest.mark.parametrize("text", ["", "600", "lots/minute", "0/minute", "1/second;600/minute", "5/fortnight"])
def test_unreadable_rates_are_refused_by_name(text: str) -> None:
    with pytest.raises(PolicyError, match="QGATE_X"):
        Rate.parse(text, "QGATE_X")


def test_a_tenant_override_changes_only_the_limits_it_names(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text('{"tenants": {"acme": {"solve_per_tenant": "1200/minute"}}}')
    policy = RatePolicy.load(DEFAULTS, path)
    assert policy.table("acme").solve_per_tenant == Rate(1200, 60)
    assert policy.table("acme").solve_per_client == Rate(4, 60)
    assert policy.table("globex") == policy.defaults
    assert [item.rate for item in policy.limits("solve", "acme", "c")] == [Rate(4, 60), Rate(1200, 60)]


@pytest.mark.parametrize("text, match", [
    ("not json", "not JSON"), ('["acme"]', "one key"), ('{"acme": {}}', "one key"),
    ('{"tenants": {"acme": "600/minute"}}', "map each tenant"),
    ('{"tenants": {"acme": {"solve_per_tenat": "1/second"}}}', "unknown limit 'solve_per_tenat'"),
    ('{"tenants": {"acme": {"solve_per_tenant": 600}}}', "tenants.acme.solve_per_tenant"),
    ('{"tenants": {"acme": {"solve_per_tenant": "0/minute"}}}', "tenants.acme.solve_per_tenant"),
])
def test_a_bad_overrides_document_names_its_fault(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "limits.json"
    path.write_text(text)
    with pytest.raises(PolicyError, match=match):
        RatePolicy.load(DEFAULTS, path)


def test_a_missing_overrides_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        RatePolicy.load(DEFAULTS, tmp_path / "absent.json")


def test_parse_overrides_accepts_an_empty_document() -> None:
    assert parse_overrides("{}", "x") == {}


# --- the settings ------------------------------------------------------------------------------------

def test_the_settings_hold_the_rates_and_the_switch() -> None:
    settings = Settings.from_env({"QGATE_RATE_SOLVE_PER_CLIENT": "5 per 10 seconds", "QGATE_RATE_LIMITS": "off",
                                  "QGATE_LOGIN_FAILURES_PER_CLIENT": "3"})
    assert settings.default_rates["solve_per_client"] == "5 per 10 seconds"
    assert not settings.rate_limits_enabled and settings.login_failures_per_client == 3
    assert Settings.from_env({}).rate_limits_enabled


@pytest.mark.parametrize("env", [{"QGATE_RATE_SOLVE_PER_TENANT": "600"}, {"QGATE_RATE_READ_PER_CLIENT": "0/second"},
                                 {"QGATE_RATE_LIMITS": "maybe"}, {"QGATE_LOGIN_FAILURE_WINDOW_S": "0"},
                                 {"QGATE_RATE_LIMIT_PER_MINUTE": "0"}])
def test_bad_or_retired_rate_settings_name_themselves(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)
