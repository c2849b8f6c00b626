"""Tenant isolation on every route, enumerated from the Flask URL map so that no route is forgotten.

Tenant B (with every scope a client can get short of ``audit:admin``, which reads the whole log by
design) must get 404 for tenant A's job on every route that takes an id, and must find none of A's data
(tenant, job id, client id) in what any other route answers. EXPECTATIONS says how each (method, rule)
is checked; a route added to the app without an entry there fails ``test_every_route_has_an_expectation``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import pytest
import requests

from api.app import create_app
from settings import Settings
from tests.integration import problems
from tests.integration.conftest import ALL_SCOPES
from tests.integration.stack import Stack

IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask adds both; HEAD is checked with its GET
IGNORED_RULES = {"/static/<path:filename>"}  # Flask's own (empty); the console's files are under /dashboard/static
VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@lru_cache(maxsize=1)
def url_map_routes() -> frozenset[tuple[str, str]]:
    """Every (method, rule) the app serves, from its URL map."""
    app = create_app(Settings())
    return frozenset((method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule not in IGNORED_RULES
                     for method in rule.methods or () if method not in IGNORED_METHODS)


@dataclass
class Tenants:
    """Tenant A with a finished job, audited and checkpointed; tenant B, the one trying to get at it."""

    stack: Stack
    a: dict[str, Any]
    b: dict[str, Any]
    token_a: str
    token_b: str
    job_a: str
    idempotency_key: str
    body: dict[str, Any]

    def secrets_of_a(self) -> list[str]:
        return [self.a["tenant"], self.job_a, self.a["client_id"]]

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
        headers = {**(self.stack.headers(token) if token else {}), **kwargs.pop("headers", {})}
        return requests.request(method, self.stack.url + path, headers=headers, timeout=60, **kwargs)

    def assert_no_leak(self, reply: requests.Response, what: str) -> None:
        for secret in self.secrets_of_a():
            assert secret not in reply.text, f"{what} shows tenant A's {secret!r}"
            for name, value in reply.headers.items():
                assert secret not in value, f"{what} shows tenant A's {secret!r} in header {name}"

    def a_entry_indices(self) -> list[int]:
        return [i for i, entry in enumerate(self.stack.audit_entries()) if entry.get("job_id") == self.job_a]


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> Tenants:
    tag = secrets.token_hex(4)
    a = stack.create_client(f"iso-a-{tag}", ALL_SCOPES)
    b = stack.create_client(f"iso-b-{tag}", ALL_SCOPES)
    token_a, token_b = stack.token(a), stack.token(b)
    # the heuristic lane's exact MILP answers a 5-node tour in milliseconds: a sync answer within 1 s even
    # on a loaded machine, where the sim lane's cold QAOA could spend the budget (CI saw a 504 here)
    body = {"problem": problems.tsp(5), "solver": "heuristic"}
    key = f"iso-{tag}"
    reply = stack.solve(token_a, body, budget_ms=1000, **{"Idempotency-Key": key})
    assert reply.status_code == 200, reply.text
    job = reply.json()["job_id"]
    stack.wait_audited(job, "job.succeeded")
    ctx = Tenants(stack, a, b, token_a, token_b, job, key, body)
    receipt = ctx.call("GET", f"/api/v1/audit/jobs/{job}/receipt", token_a)  # waits for a covering checkpoint
    assert receipt.status_code == 200, receipt.text
    return ctx


def _path(rule: str, ctx: Tenants, job_id: str | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) == "filename":
            return "console.css"
        if match.group(1) == "lane":
            return "qpu"
        assert match.group(1) == "job_id", f"no known value for <{match.group(1)}> in {rule}: teach this test"
        return job_id or ctx.job_a
    return VARIABLE.sub(value, rule)


# --- the checks ---------------------------------------------------------------------------------------

Check = Callable[[Tenants, str, str], None]


def foreign_job_is_404(ctx: Tenants, method: str, rule: str) -> None:
    """B gets 404 for A's job, exactly as for a job that does not exist; A itself does not."""
    path = _path(rule, ctx)
    for verb in ([method, "HEAD"] if method == "GET" else [method]):
        reply = ctx.call(verb, path, ctx.token_b)
        assert reply.status_code == 404, (verb, path, reply.status_code, reply.text)
        ctx.assert_no_leak(reply, f"{verb} {rule} as B")
    missing = ctx.call(method, _path(rule, ctx, "0" * 32), ctx.token_b)
    assert missing.status_code == 404 and missing.json() == ctx.call(method, path, ctx.token_b).json()
    if method == "GET":
        assert ctx.call(method, path, ctx.token_a).status_code == 200  # positive control


def foreign_cancel_is_404(ctx: Tenants, method: str, rule: str) -> None:
    """B cannot cancel A's job, finished or still running: 404, and A's job goes on to succeed."""
    assert method == "DELETE"
    finished = ctx.call("DELETE", _path(rule, ctx), ctx.token_b)
    assert finished.status_code == 404, finished.text
    ctx.assert_no_leak(finished, f"DELETE {rule} as B")
    running = ctx.stack.solve(ctx.token_a, {"problem": problems.tsp(8, seed=7)}, budget_ms=60_000)
    assert running.status_code in (200, 202), running.text
    job = running.json()["job_id"]
    refused = ctx.call("DELETE", _path(rule, ctx, job), ctx.token_b)
    assert refused.status_code == 404, refused.text
    assert ctx.stack.wait_job(ctx.token_a, job)["status"] == "succeeded"
    assert ctx.stack.job(ctx.token_a, ctx.job_a).json()["status"] == "succeeded"


def own_token_only(ctx: Tenants, method: str, rule: str) -> None:
    """B's credentials give a token for B's tenant and client, never A's."""
    reply = ctx.call(method, rule, None, data={"grant_type": "client_credentials"},
                     auth=(ctx.b["client_id"], ctx.b["client_secret"]))
    assert reply.status_code == 200, reply.text
    payload = reply.json()["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["tenant"], claims["sub"]) == (ctx.b["tenant"], ctx.b["client_id"])
    ctx.assert_no_leak(reply, f"{method} {rule} as B")


def idempotency_keys_are_per_tenant(ctx: Tenants, method: str, rule: str) -> None:
    """B replaying A's Idempotency-Key with A's body gets a job of its own, not A's."""
    reply = ctx.call(method, rule, ctx.token_b, json=ctx.body,
                     headers={"X-Latency-Budget-Ms": "1000", "Idempotency-Key": ctx.idempotency_key})
    assert reply.status_code == 200, reply.text
    ctx.assert_no_leak(reply, f"{method} {rule} as B")
    job_b = reply.json()["job_id"]
    assert job_b != ctx.job_a
    assert ctx.stack.job(ctx.token_a, job_b).status_code == 404  # and A cannot see B's either


def no_leak(statuses: tuple[int, ...] = (200,), **params: Any) -> Check:
    """The route answers B (and anyone, for unauthenticated routes) without any of A's data."""
    def check(ctx: Tenants, method: str, rule: str) -> None:
        resolved = {name: value(ctx) if callable(value) else value for name, value in params.items()}
        for who, token in (("B", ctx.token_b), ("anonymous", None)):
            reply = ctx.call(method, rule, token, params=resolved)
            assert reply.status_code < 500, (who, rule, reply.status_code, reply.text)
            if who == "B":
                assert reply.status_code in statuses, (rule, reply.status_code, reply.text)
            ctx.assert_no_leak(reply, f"{method} {rule} as {who}")
    return check


def entries_are_filtered(ctx: Tenants, method: str, rule: str) -> None:
    """Entry ranges holding A's entries show B none of them; A sees them (positive control)."""
    indices = ctx.a_entry_indices()
    assert indices, "tenant A's job left no audit entries"
    start = max(0, indices[-1] - 999)
    params = {"start": start, "end": start + 1000}
    as_b = ctx.call(method, rule, ctx.token_b, params=params)
    assert as_b.status_code == 200, as_b.text
    ctx.assert_no_leak(as_b, f"{method} {rule} as B")
    for item in as_b.json()["entries"]:
        assert json.loads(item["line"]).get("tenant") == ctx.b["tenant"]
    seen_by_a = {item["index"] for item in ctx.call(method, rule, ctx.token_a, params=params).json()["entries"]}
    assert set(indices) <= seen_by_a


def _inclusion_params(ctx: Tenants) -> dict[str, int]:
    index = ctx.a_entry_indices()[0]
    return {"index": index, "size": index + 1}


def console_needs_a_session(ctx: Tenants, method: str, rule: str) -> None:
    """The console is an operator's view of every tenant (ops:read, by design), reached only through its
    own sign-in: a bearer token, even B's with ops:read, opens no page, and nothing of A's shows."""
    path = _path(rule, ctx)
    for who, token in (("B", ctx.token_b), ("anonymous", None)):
        reply = ctx.call(method, path, token, allow_redirects=False)
        if method == "POST":
            assert reply.status_code == 403, (who, rule, reply.status_code)  # no session, no CSRF token
        else:
            assert reply.status_code == 303 and reply.headers["Location"].endswith("/dashboard/login"), (who, rule)
        ctx.assert_no_leak(reply, f"{method} {rule} as {who}")


def usage_is_own_tenant(ctx: Tenants, method: str, rule: str) -> None:
    """B's usage is B's: by default even with ops:read, and ``tenant=<A>`` needs ops:read (B has it, so a
    client of B's tenant without it is refused)."""
    reply = ctx.call(method, rule, ctx.token_b, params={"group_by": "tenant"})
    assert reply.status_code == 200, reply.text
    ctx.assert_no_leak(reply, f"{method} {rule} as B")
    assert {row["group"] for row in reply.json()["rows"]} <= {ctx.b["tenant"]}
    plain = ctx.stack.create_client(ctx.b["tenant"], "quantum:solve")
    refused = ctx.call(method, rule, ctx.stack.token(plain), params={"tenant": ctx.a["tenant"]})
    assert refused.status_code == 403, refused.text
    ctx.assert_no_leak(refused, f"{method} {rule} as B without ops:read")
    own = ctx.call(method, rule, ctx.token_a, params={"group_by": "tenant"}).json()["rows"]
    assert sum(row["jobs"] for row in own) >= 1  # positive control: A's finished job is counted


def spend_limits_are_own_tenant(ctx: Tenants, method: str, rule: str) -> None:
    """B sees only B's allowances (even with ops:read, unless it asks), and ``tenant=<A>`` needs ops:read."""
    ctx.stack.cli("limits", "set", "--tenant", ctx.a["tenant"], "--qpu-usd-per-day", "7")
    ctx.stack.cli("limits", "set", "--tenant", ctx.b["tenant"], "--qpu-usd-per-day", "3")
    reply = ctx.call(method, rule, ctx.token_b)
    assert reply.status_code == 200, reply.text
    ctx.assert_no_leak(reply, f"{method} {rule} as B")
    assert {row["tenant"] for row in reply.json()["limits"]} == {ctx.b["tenant"]}
    plain = ctx.stack.create_client(ctx.b["tenant"], "quantum:solve")
    refused = ctx.call(method, rule, ctx.stack.token(plain), params={"tenant": ctx.a["tenant"]})
    assert refused.status_code == 403, refused.text
    ctx.assert_no_leak(refused, f"{method} {rule} as B without ops:read")
    own = ctx.call(method, rule, ctx.token_a).json()["limits"]
    assert [row["allowance"] for row in own if row["window"] == "day"] == [7]  # positive control


EXPECTATIONS: dict[tuple[str, str], Check] = {
    ("POST", "/oauth/token"): own_token_only,
    ("GET", "/.well-known/jwks.json"): no_leak(),
    ("POST", "/api/v1/quantum/solve"): idempotency_keys_are_per_tenant,
    ("GET", "/api/v1/jobs/<job_id>"): foreign_job_is_404,
    ("DELETE", "/api/v1/jobs/<job_id>"): foreign_cancel_is_404,
    ("POST", "/api/v1/jobs/<job_id>/redeliver"): foreign_job_is_404,
    ("GET", "/api/v1/audit/jobs/<job_id>"): foreign_job_is_404,
    ("GET", "/api/v1/audit/jobs/<job_id>/receipt"): foreign_job_is_404,
    ("GET", "/api/v1/audit/entries"): entries_are_filtered,
    # Tree-wide evidence: sizes, hashes, signatures and keys, the same for every tenant.
    ("GET", "/api/v1/audit/verify"): no_leak(),
    ("GET", "/api/v1/audit/checkpoint"): no_leak(),
    ("GET", "/api/v1/audit/keys"): no_leak(),
    ("GET", "/api/v1/audit/proof/inclusion"): no_leak(**{k: (lambda c, k=k: _inclusion_params(c)[k])
                                                        for k in ("index", "size")}),
    ("GET", "/api/v1/audit/proof/consistency"): no_leak(first=1, second=lambda c: c.a_entry_indices()[-1] + 1),
    ("GET", "/healthz"): no_leak(),
    ("GET", "/readyz"): no_leak(statuses=(200, 503)),  # 503 while a lane has no live worker
    ("GET", "/metrics"): no_leak(),
    ("GET", "/openapi.json"): no_leak(),
    ("GET", "/api/v1/usage"): usage_is_own_tenant,
    ("GET", "/api/v1/usage/limits"): spend_limits_are_own_tenant,
    ("GET", "/api/v1/reports/lanes"): no_leak(),  # B's own shadow comparisons only (A's tenant= needs ops:read)
    # the device's readings: no tenant's data in them
    ("GET", "/api/v1/ops/lanes/<lane>/canary"): lambda ctx, method, rule: no_leak()(ctx, method, _path(rule, ctx)),
    ("GET", "/dashboard/login"): no_leak(),
    ("GET", "/dashboard/static/<path:filename>"): lambda ctx, method, rule: no_leak()(ctx, method, _path(rule, ctx)),
    ("POST", "/dashboard/login"): console_needs_a_session,
    ("POST", "/dashboard/logout"): console_needs_a_session,
    ("GET", "/dashboard"): console_needs_a_session,
    ("GET", "/dashboard/jobs"): console_needs_a_session,
    ("GET", "/dashboard/jobs/<job_id>"): console_needs_a_session,
    ("GET", "/dashboard/tenants"): console_needs_a_session,
    ("GET", "/dashboard/audit"): console_needs_a_session,
    ("POST", "/dashboard/audit/verify"): console_needs_a_session,
}


def test_every_route_has_an_expectation() -> None:
    routes = url_map_routes()
    assert routes - set(EXPECTATIONS) == set(), "a route without a tenant-isolation expectation: add it above"
    assert set(EXPECTATIONS) - routes == set(), "an expectation for a route the app no longer has"


@pytest.mark.parametrize("method,rule", sorted(url_map_routes()), ids=lambda v: v)
def test_tenant_b_cannot_reach_tenant_a(tenants: Tenants, method: str, rule: str) -> None:
    check = EXPECTATIONS.get((method, rule))
    assert check is not None, f"{method} {rule} has no tenant-isolation expectation"
    check(tenants, method, rule)
