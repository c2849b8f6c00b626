"""The job store's keys and lease bookkeeping (fakeredis: logic only)."""

from __future__ import annotations

import fakeredis
import pytest

from jobs import model
from jobs.store import LEASES, JobStore, idempotency_key
from routing import fallback


def _new(store: JobStore, tenant: str = "acme") -> model.Job:
    job, events = model.new_job(job_id=model.new_job_id(), tenant=tenant, client_id="c", kind="tsp",
                                budget_ms=5000, request={}, plan=[{"lane": "heuristic", "action": "try",
                                                                   "reason": "first lane"}],
                                fingerprint="sha256:x", cost_estimate={"usd": 0.0, "basis": ""})
    job, dispatched = fallback.start(job, 1000)
    store.create(job, {"kind": "tsp"}, events + dispatched)
    return job


def test_the_first_attempt_is_in_the_watchdogs_lease_set() -> None:
    store = JobStore(fakeredis.FakeRedis(decode_responses=True), 3600)
    job = _new(store)
    assert store.redis.zscore(LEASES, job.job_id) == pytest.approx(job.current.lease_until)


@pytest.mark.parametrize("first, second", [(("acme:k2", "y"), ("acme", "k2:y")), (("a", "b:c"), ("a:b", "c")),
                                           (("", "x"), ("x", "")), (("acme", "k"), ("acme ", "k"))])
def test_idempotency_keys_of_different_tenants_never_collide(first: tuple, second: tuple) -> None:
    assert idempotency_key(*first) != idempotency_key(*second)


def test_idempotency_keys_hold_no_caller_text() -> None:
    key = idempotency_key("acme", "qgate:job:x\r\n*1")
    assert key.startswith("qgate:idem:") and all(c in "0123456789abcdef" for c in key.removeprefix("qgate:idem:"))


@pytest.mark.parametrize("job_id", ["", "0" * 31, "0" * 33, "A" * 32, "0" * 32 + ":problem", "../x", "0" * 31 + "\n",
                                    "０" * 32])
def test_job_ids_other_than_32_lowercase_hex_are_not_job_ids(job_id: str) -> None:
    assert not model.is_job_id(job_id)


def test_new_job_ids_are_job_ids() -> None:
    assert all(model.is_job_id(model.new_job_id()) for _ in range(100))


def test_quarantined_events_are_a_prometheus_counter() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from telemetry.metrics import COUNTERS, RedisCollector

    client = fakeredis.FakeRedis(decode_responses=True)
    client.hincrby(COUNTERS, "audit_quarantined", 3)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, lambda _: {"qpu": [], "sim": [], "heuristic": []}))
    assert "qgate_audit_quarantined_total 3.0" in generate_latest(registry).decode()
