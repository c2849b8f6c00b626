"""The typed job: it reads and writes exactly the JSON the dict-based job of earlier versions did, its
transitions behave as before, and the job resource's view and OpenAPI schema both come from ``JobView``."""

from __future__ import annotations

import json
import math
from typing import Any

import fakeredis
import pytest

from jobs import model
from jobs.model import Job, JobView
from jobs.store import JobStore, _dumps, job_key
from routing import fallback

T0 = 1_780_000_000.0
G = 2000
FP = "sha256:" + "3f" * 32
REQ = {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "callback_url": None, "seed": 7,
       "metadata": {"lane_id": "DE-FR-12"}}
PLAN = [{"lane": "qpu", "action": "try", "reason": "first lane asked for"},
        {"lane": "sim", "action": "try", "reason": "fallback"},
        {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve 'circuit'"}]
PLAN3 = [{"lane": "qpu", "action": "try", "reason": "first"}, {"lane": "sim", "action": "try", "reason": "fallback"},
         {"lane": "heuristic", "action": "try", "reason": "fallback"}]
COST = {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}

# Jobs as the previous (dict-based) version stored them in Redis and showed them (``public_view``), written
# by that version's transitions for the scenarios of ``_scenarios`` below: (stored JSON, public view JSON).
PREVIOUS = {
    'succeeded_after_fallback': (
        '{"job_id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "tenant": "acme", "client_id": "qc_1", "status": "succeeded", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-05-28T20:26:40.900Z", "latency_budget_ms": 10000, "deadline": 1780000010.0, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "callback_url": null, "seed": 7, "metadata": {"lane_id": "DE-FR-12"}}, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [{"n": 1, "lane": "qpu", "solver": "ibm", "outcome": "failed", "reason": "QpuError: device offline", "duration_ms": 480.0, "queued_ms": 20.0}, {"n": 2, "lane": "sim", "solver": "aer", "outcome": "succeeded", "reason": "", "duration_ms": 300.0, "queued_ms": 100.0}], "current": null, "result": {"counts": {"00": 512, "11": 512}}, "solver": {"lane": "sim", "id": "aer", "version": "0.15.1"}, "error": null, "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": {"sha256": "abababababababababababababababababababababababababababababababab", "backend": "fake_manila", "last_update_date": "2026-01-01"}, "solver_details": {"seed": 8, "shots": 1024, "backend": "aer_simulator"}}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "dispatches": 2, "audit_events": 8}',
        '{"job_id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "status": "succeeded", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-05-28T20:26:40.900Z", "latency_budget_ms": 10000, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [{"lane": "qpu", "solver": "ibm", "outcome": "failed", "reason": "QpuError: device offline", "duration_ms": 480.0, "queued_ms": 20.0}, {"lane": "sim", "solver": "aer", "outcome": "succeeded", "reason": "", "duration_ms": 300.0, "queued_ms": 100.0}], "result": {"counts": {"00": 512, "11": 512}}, "solver": {"lane": "sim", "id": "aer", "version": "0.15.1"}, "error": null, "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": {"sha256": "abababababababababababababababababababababababababababababababab", "backend": "fake_manila", "last_update_date": "2026-01-01"}, "solver_details": {"seed": 8, "shots": 1024, "backend": "aer_simulator"}}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "metadata": {"lane_id": "DE-FR-12"}}, "current_lane": null, "audit": {"receipt_url": "/api/v1/audit/jobs/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/receipt"}}'),
    'running': (
        '{"job_id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "tenant": "acme", "client_id": "qc_1", "status": "running", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": null, "latency_budget_ms": 10000, "deadline": 1780000010.0, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "callback_url": null, "seed": 7, "metadata": {"lane_id": "DE-FR-12"}}, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [], "current": {"n": 1, "lane": "qpu", "task_id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.1", "enqueued_at": 1780000000.0, "started_at": 1780000000.1, "limit_ms": 5000, "deadline": 1780000005.0, "lease_until": 1780000007.0, "worker": "qpu@host-1"}, "result": null, "solver": null, "error": null, "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "dispatches": 1, "audit_events": 3}',
        '{"job_id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "status": "running", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": null, "latency_budget_ms": 10000, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [], "result": null, "solver": null, "error": null, "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "metadata": {"lane_id": "DE-FR-12"}}, "current_lane": "qpu", "audit": {"receipt_url": "/api/v1/audit/jobs/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/receipt"}}'),
    'cancelled': (
        '{"job_id": "cccccccccccccccccccccccccccccccc", "tenant": "acme", "client_id": "qc_1", "status": "cancelled", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-05-28T20:26:40.300Z", "latency_budget_ms": 10000, "deadline": 1780000010.0, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "callback_url": null, "seed": 7, "metadata": {"lane_id": "DE-FR-12"}}, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [{"n": 1, "lane": "qpu", "solver": null, "outcome": "cancelled", "reason": "cancelled by the client", "duration_ms": 300.0, "queued_ms": 300.0}], "current": null, "result": null, "solver": null, "error": "cancelled by the client", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "dispatches": 1, "audit_events": 4}',
        '{"job_id": "cccccccccccccccccccccccccccccccc", "status": "cancelled", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-05-28T20:26:40.300Z", "latency_budget_ms": 10000, "plan": [{"lane": "qpu", "action": "try", "reason": "first lane asked for"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "skip", "reason": "unsupported: the heuristic lane does not solve \'circuit\'"}], "attempts": [{"lane": "qpu", "solver": null, "outcome": "cancelled", "reason": "cancelled by the client", "duration_ms": 300.0, "queued_ms": 300.0}], "result": null, "solver": null, "error": "cancelled by the client", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "metadata": {"lane_id": "DE-FR-12"}}, "current_lane": null, "audit": {"receipt_url": "/api/v1/audit/jobs/cccccccccccccccccccccccccccccccc/receipt"}}'),
    'failed_with_skips_and_timeout': (
        '{"job_id": "dddddddddddddddddddddddddddddddd", "tenant": "acme", "client_id": "qc_1", "status": "failed", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-11-26T20:40:27.838Z", "latency_budget_ms": 1000, "deadline": 1780000001.0, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "callback_url": null, "seed": 7, "metadata": {"lane_id": "DE-FR-12"}}, "plan": [{"lane": "qpu", "action": "try", "reason": "first"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "try", "reason": "fallback"}], "attempts": [{"n": 1, "lane": "qpu", "solver": null, "outcome": "failed", "reason": "x", "duration_ms": 850.0, "queued_ms": 850.0}, {"n": 2, "lane": "sim", "solver": null, "outcome": "skipped", "reason": "budget: 150 ms left, kept for the lanes after sim", "duration_ms": 0.0, "queued_ms": 0.0}, {"n": 3, "lane": "heuristic", "solver": null, "outcome": "timeout", "reason": "lease expired: waited 2650 ms in the heuristic queue and no worker took it (limit 135 ms + grace): lane over capacity, or its workers lost", "duration_ms": 2650.0, "queued_ms": 2650.0}], "current": null, "result": null, "solver": null, "error": "latency budget of 1000 ms exhausted (qpu failed: x; sim skipped: budget: 150 ms left, kept for the lanes after sim; heuristic timeout: lease expired: waited 2650 ms in the heuristic queue and no worker took it (limit 135 ms + grace): lane over capacity, or its workers lost)", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "dispatches": 2, "audit_events": 7}',
        '{"job_id": "dddddddddddddddddddddddddddddddd", "status": "failed", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-11-26T20:40:27.838Z", "latency_budget_ms": 1000, "plan": [{"lane": "qpu", "action": "try", "reason": "first"}, {"lane": "sim", "action": "try", "reason": "fallback"}, {"lane": "heuristic", "action": "try", "reason": "fallback"}], "attempts": [{"lane": "qpu", "solver": null, "outcome": "failed", "reason": "x", "duration_ms": 850.0, "queued_ms": 850.0}, {"lane": "sim", "solver": null, "outcome": "skipped", "reason": "budget: 150 ms left, kept for the lanes after sim", "duration_ms": 0.0, "queued_ms": 0.0}, {"lane": "heuristic", "solver": null, "outcome": "timeout", "reason": "lease expired: waited 2650 ms in the heuristic queue and no worker took it (limit 135 ms + grace): lane over capacity, or its workers lost", "duration_ms": 2650.0, "queued_ms": 2650.0}], "result": null, "solver": null, "error": "latency budget of 1000 ms exhausted (qpu failed: x; sim skipped: budget: 150 ms left, kept for the lanes after sim; heuristic timeout: lease expired: waited 2650 ms in the heuristic queue and no worker took it (limit 135 ms + grace): lane over capacity, or its workers lost)", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": 7, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "request": {"solver": "auto", "strategy": "fallback", "cost_tier": "standard", "metadata": {"lane_id": "DE-FR-12"}}, "current_lane": null, "audit": {"receipt_url": "/api/v1/audit/jobs/dddddddddddddddddddddddddddddddd/receipt"}}'),
    'never_dispatched': (
        '{"job_id": "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "tenant": "acme", "client_id": "qc_1", "status": "failed", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-11-26T20:41:18.534Z", "latency_budget_ms": 1, "deadline": 1780000000.001, "request": {"solver": "heuristic", "strategy": "fallback", "cost_tier": "premium", "callback_url": null, "seed": null, "metadata": {}}, "plan": [{"lane": "heuristic", "action": "try", "reason": "fallback"}], "attempts": [], "current": null, "result": null, "solver": null, "error": "latency budget of 1 ms exhausted", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": null, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "audit_events": 2}',
        '{"job_id": "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "status": "failed", "kind": "circuit", "created_at": "2026-05-28T20:26:40.000Z", "finished_at": "2026-11-26T20:41:18.534Z", "latency_budget_ms": 1, "plan": [{"lane": "heuristic", "action": "try", "reason": "fallback"}], "attempts": [], "result": null, "solver": null, "error": "latency budget of 1 ms exhausted", "provenance": {"fingerprint": "sha256:3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f", "seed": null, "calibration": null}, "cost_estimate": {"usd": 0.0125, "basis": "worst case over planned lanes: qpu $0.0125, sim $0.0000"}, "request": {"solver": "heuristic", "strategy": "fallback", "cost_tier": "premium", "metadata": {}}, "current_lane": null, "audit": {"receipt_url": "/api/v1/audit/jobs/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee/receipt"}}'),
}
# A job that fails without a lane left passes no time to ``model.fail``: its finished_at is the wall clock.
WALL_CLOCK = {"failed_with_skips_and_timeout", "never_dispatched"}


def _new(job_id: str, budget: int = 10_000, plan: list[dict[str, Any]] = PLAN,
         request: dict[str, Any] = REQ) -> tuple[Job, int]:
    job, events = model.new_job(job_id=job_id, tenant="acme", client_id="qc_1", kind="circuit", budget_ms=budget,
                                request=dict(request), plan=[dict(s) for s in plan], fingerprint=FP,
                                cost_estimate=dict(COST), now=T0)
    return job, len(events)


def _scenarios() -> dict[str, Job]:
    """The scenarios of PREVIOUS, through today's transitions (``audit_events`` counted as the store does)."""
    out: dict[str, Job] = {}
    job, n = _new("a" * 32)
    steps = [lambda j: fallback.start(j, G, now=T0),
             lambda j: fallback.begin_attempt(j, 1, "qpu@host-1", G, now=T0 + 0.02),
             lambda j: fallback.conclude_attempt(j, 1, "failed", "QpuError: device offline", G,
                                                 solver={"lane": "qpu", "id": "ibm", "version": "1.2"}, now=T0 + 0.5),
             lambda j: fallback.begin_attempt(j, 2, "sim@host-2", G, now=T0 + 0.6),
             lambda j: fallback.conclude_attempt(
                 j, 2, "succeeded", "", G, solver={"lane": "sim", "id": "aer", "version": "0.15.1"},
                 result={"counts": {"00": 512, "11": 512}},
                 provenance={"seed": 7, "solver_details": {"seed": 8, "shots": 1024, "backend": "aer_simulator"},
                             "calibration": {"sha256": "ab" * 32, "backend": "fake_manila",
                                             "last_update_date": "2026-01-01"}}, now=T0 + 0.9)]
    out["succeeded_after_fallback"] = _run(job, n, steps)
    job, n = _new("b" * 32)
    out["running"] = _run(job, n, [lambda j: fallback.start(j, G, now=T0),
                                   lambda j: fallback.begin_attempt(j, 1, "qpu@host-1", G, now=T0 + 0.1)])
    job, n = _new("c" * 32)
    out["cancelled"] = _run(job, n, [lambda j: fallback.start(j, G, now=T0), lambda j: model.cancel(j, now=T0 + 0.3)])
    job, n = _new("d" * 32, budget=1000, plan=PLAN3)
    out["failed_with_skips_and_timeout"] = _run(job, n, [
        lambda j: fallback.start(j, G, now=T0),
        lambda j: fallback.conclude_attempt(j, 1, "failed", "x", G, now=T0 + 0.85),
        lambda j: fallback.expire_lease(j, G, now=T0 + 3.5)])
    request = {"solver": "heuristic", "strategy": "fallback", "cost_tier": "premium", "callback_url": None,
               "seed": None, "metadata": {}}
    job, n = _new("e" * 32, budget=1, plan=PLAN3[2:], request=request)
    out["never_dispatched"] = _run(job, n, [lambda j: fallback.start(j, G, now=T0)])
    return out


def _run(job: Job, n: int, steps: list[Any]) -> Job:
    for step in steps:
        job, events = step(job)
        n += len(events)
    job.audit_events = n
    return job


def _keys(value: Any) -> Any:
    """The shape of a JSON value: its keys, in order, at every depth."""
    if isinstance(value, dict):
        return [(k, _keys(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return None


@pytest.mark.parametrize("name", sorted(PREVIOUS))
def test_a_job_written_by_the_previous_version_reads_and_writes_back_unchanged(name: str) -> None:
    stored, view = PREVIOUS[name]
    job = Job.model_validate_json(stored)
    assert _dumps(job) == stored  # byte for byte: same keys, same order, same numbers
    previous_view = {**json.loads(view), "deliveries": []}  # the resource gained the webhook delivery log
    assert model.public_view(job) == previous_view
    assert list(model.public_view(job)) == list(previous_view)


@pytest.mark.parametrize("name", sorted(PREVIOUS))
def test_todays_transitions_write_what_the_previous_version_wrote(name: str) -> None:
    stored = json.loads(PREVIOUS[name][0])
    written = json.loads(_dumps(_scenarios()[name]))
    if name in WALL_CLOCK:
        stored["finished_at"] = written["finished_at"] = None
    assert written == stored and _keys(written) == _keys(stored)


@pytest.mark.parametrize("name", sorted(PREVIOUS))
def test_json_mode_dumps_the_same_keys_as_the_stored_form(name: str) -> None:
    job = _scenarios()[name]
    stored = json.loads(_dumps(job))
    assert _keys(job.model_dump(mode="json")) == _keys(job.model_dump()) == _keys(stored)
    assert Job.model_validate_json(json.dumps(job.model_dump(mode="json"))) == job


def test_optional_keys_appear_only_once_set() -> None:
    job, _ = _new("f" * 32)
    assert {"dispatches", "audit_events"}.isdisjoint(job.model_dump())
    job, _ = fallback.start(job, G, now=T0)
    assert "worker" not in job.model_dump()["current"] and job.model_dump()["dispatches"] == 1
    job, _ = model.start_attempt(job, 1, "w1", now=T0 + 0.1)
    assert job.model_dump()["current"]["worker"] == "w1"


def test_the_store_reads_and_writes_typed_jobs_as_the_same_json() -> None:
    store = JobStore(fakeredis.FakeRedis(decode_responses=True), 3600)
    for name, (stored, _) in PREVIOUS.items():
        job_id = json.loads(stored)["job_id"]
        store.redis.set(job_key(job_id), stored)
        assert store.get(job_id) == Job.model_validate_json(stored)
    running = json.loads(PREVIOUS["running"][0])
    job = store.transition(running["job_id"], model.cancel, now=T0 + 1)
    after = json.loads(store.redis.get(job_key(running["job_id"])))
    assert isinstance(job, Job) and after["status"] == "cancelled" and after["attempts"][0]["outcome"] == "cancelled"
    assert _keys(after) == _keys(json.loads(PREVIOUS["cancelled"][0]))


def test_an_answer_json_cannot_carry_is_still_refused_when_stored() -> None:
    job, _ = fallback.start(_new("f" * 32)[0], G, now=T0)
    job, _ = fallback.conclude_attempt(job, 1, "succeeded", "", G, solver={"lane": "qpu", "id": "x", "version": "1"},
                                       result={"energy": math.nan}, now=T0 + 1)
    with pytest.raises(ValueError):
        _dumps(job)


@pytest.mark.parametrize("name", sorted(PREVIOUS))
def test_the_public_view_is_a_job_view(name: str) -> None:
    view = model.public_view(_scenarios()[name])
    assert list(view) == [*json.loads(PREVIOUS[name][1]), "deliveries"]
    required = {name for name, info in JobView.model_fields.items() if info.is_required()}
    assert set(view) == required and required | {"queue", "decision", "portfolio", "shadow", "trace_id"} == set(JobView.model_fields)
    assert JobView.model_validate(view).model_dump(exclude_unset=True) == view  # priority: absent on older jobs
    assert {"tenant", "client_id", "deadline", "current", "dispatches", "audit_events"}.isdisjoint(view)


def test_the_openapi_job_schema_is_the_job_views() -> None:
    from api.openapi import openapi_document

    document = openapi_document()
    schemas = document["components"]["schemas"]
    expected = JobView.model_json_schema(ref_template="#/components/schemas/{model}")
    parts = expected.pop("$defs")
    assert schemas["Job"] == expected and all(schemas[name] == part for name, part in parts.items())
    text = json.dumps(document)
    assert "$defs" not in text
    refs = {ref.split("/")[-1] for ref in _refs(document)}
    assert refs <= set(schemas)
    assert set(expected["required"]) == set(JobView.model_fields) - {"queue", "decision", "portfolio", "shadow", "trace_id"}
    assert {"queue", "decision"} <= set(expected["properties"]) and {"JobQueue", "JobDecision"} <= set(schemas)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if "$ref" in value else []
        return own + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_queue_and_decision_appear_in_the_view_when_there_is_something_to_show() -> None:
    job = _scenarios()["running"]
    job.decisions = [{"at": "2026-01-01T00:00:00.000Z", "lane": "qpu", "action": "dispatch", "share_ms": 2500,
                      "remaining_ms": 5000, "outlook": None}]
    queue = {"lane": "qpu", "position": 3, "ahead": 2, "predicted_start_at": "2026-01-01T00:00:01.000Z",
             "predicted_finish_at": "2026-01-01T00:00:03.000Z", "basis": "cold start"}
    view = model.public_view(job, queue)
    assert view["queue"] == queue and view["decision"] == job.decisions
    assert JobView.model_validate(view).model_dump(exclude_unset=True) == view
    assert Job.model_validate_json(_dumps(job)).decisions == job.decisions
