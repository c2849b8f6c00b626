"""The orchestration core with fakeredis and a recording Enqueuer: admission, attempts, leases, cancel."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import fakeredis
import pytest

from jobs import model
from jobs.store import LEASES, JobStore, calibration_key
from orchestrator.service import (
    AttemptCancelled,
    AttemptTimeLimit,
    IdempotencyConflict,
    InjectedFault,
    JobAlreadyFinished,
    JobNotFound,
    JobService,
    NoLaneAvailable,
    NoLaneCanSolve,
    QuotaExceeded,
    ServiceConfig,
    Submission,
)
from routing.plan import LaneStatus
from solvers.base import LaneLimits, Solution
from solvers.problems import parse_problem

ALL = frozenset({"quantum:solve", "solver:qpu", "solver:sim", "solver:heuristic"})
TSP = {"kind": "tsp", "locations": [[0, 0], [3, 4], [6, 0]]}


@dataclass
class Caller:
    tenant: str = "acme"
    client_id: str = "qc_1"
    scopes: frozenset[str] = ALL


@dataclass
class RecordingEnqueuer:
    sent: list[tuple[str, int, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    fail: bool = False

    def enqueue(self, job: model.Job) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        current = job.current
        if current:
            self.sent.append((job.job_id, current.n, current.lane))

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


@dataclass
class Lanes:
    alive: tuple[str, ...] = ("qpu", "sim", "heuristic")

    def statuses(self) -> dict[str, LaneStatus]:
        return {lane: LaneStatus(lane in self.alive, LaneLimits(max_qubits=24)) for lane in ("qpu", "sim", "heuristic")}


class FakeSolver:
    id, version, lane = "fake", "1", "any"
    kinds = frozenset({"tsp", "cvrp", "assignment", "qubo", "circuit"})

    def __init__(self, behaviour: str = "ok", calibration: dict[str, Any] | None = None) -> None:
        self.behaviour, self.calibration = behaviour, calibration

    def can_solve(self, problem: Any, limits: Any) -> Any:
        from solvers.base import Verdict

        return Verdict(True, "")

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        if self.behaviour == "raise":
            raise RuntimeError("solver exploded")
        if self.behaviour == "slow":
            raise AttemptTimeLimit()
        if self.behaviour == "bad":
            return Solution({"tour": [1, 0, 2]} if problem.kind == "tsp" else {"bits": [2, 0]})
        if problem.kind == "qubo":
            return Solution({"bits": [1, 1]}, {"seed": seed})
        return Solution({"tour": [0, 1, 2]}, {"seed": seed, "energy": float("inf")}, self.calibration)


@dataclass
class Runtime:
    solver: FakeSolver = field(default_factory=FakeSolver)
    fault: bool = False

    def solvers(self, lane: str) -> list[Any]:
        return [self.solver]

    def limits(self, lane: str) -> LaneLimits:
        return LaneLimits()

    def time_limit(self, deadline: float, cancelled: Any = None) -> contextlib.AbstractContextManager[None]:
        self.cancelled = cancelled
        return contextlib.nullcontext()

    def before_solve(self, lane: str) -> None:
        if self.fault:
            raise InjectedFault("injected fault")


@pytest.fixture
def service() -> JobService:
    store = JobStore(fakeredis.FakeRedis(decode_responses=True), 3600)
    return JobService(store, RecordingEnqueuer(), ServiceConfig(lease_grace_ms=1000), Lanes())


def _submit(service: JobService, *, solver: str = "heuristic", budget_ms: int = 5000, key: str | None = None,
            body: Any = None, caller: Caller | None = None, problem: dict = TSP) -> tuple[model.Job, bool]:
    submission = Submission(parse_problem(problem), budget_ms, {"solver": solver, "seed": 7},
                            idempotency_key=key, body=body if body is not None else {"problem": problem})
    return service.submit(caller or Caller(), submission)


def test_admission_stores_the_job_with_its_lease_and_enqueues_the_first_lane(service: JobService) -> None:
    job, replayed = _submit(service)
    assert not replayed and job.status == "queued"
    assert service.enqueuer.sent == [(job.job_id, 1, "heuristic")]
    assert service.store.redis.zscore(LEASES, job.job_id) == pytest.approx(job.current.lease_until)
    assert service.store.problem(job.job_id)["kind"] == "tsp"
    assert service.job_of("acme", job.job_id).job_id == job.job_id


def test_a_job_that_cannot_be_published_is_still_admitted_and_left_to_its_lease(service: JobService) -> None:
    service.enqueuer.fail = True
    job, _ = _submit(service)
    assert service.store.redis.zscore(LEASES, job.job_id) is not None


@dataclass
class TransactionalEnqueuer(RecordingEnqueuer):
    """Offers the first message as a write in the job's creating transaction, as Celery's enqueuer does."""

    broken: bool = False

    def publisher(self, job: model.Job) -> Any:
        if self.broken:
            raise ConnectionError("cannot build the message")
        return lambda pipe: pipe.lpush(f"queue:{job.current.lane}", f"{job.job_id}.{job.current.n}")


def test_the_first_message_is_written_in_the_jobs_own_transaction(service: JobService) -> None:
    service.enqueuer = TransactionalEnqueuer()
    job, _ = _submit(service)
    assert service.store.redis.lrange("queue:heuristic", 0, -1) == [f"{job.job_id}.1"]
    assert service.enqueuer.sent == []  # not published a second time


def test_an_admission_refused_by_the_quota_leaves_no_message_lease_or_event(service: JobService) -> None:
    service.enqueuer = TransactionalEnqueuer()
    service.config = ServiceConfig(lease_grace_ms=1000, max_active_jobs_per_tenant=1)
    redis = service.store.redis
    _submit(service)
    before = (redis.llen("queue:heuristic"), redis.zcard(LEASES), redis.xlen("qgate:audit:events"))
    with pytest.raises(QuotaExceeded):
        _submit(service)
    assert (redis.llen("queue:heuristic"), redis.zcard(LEASES), redis.xlen("qgate:audit:events")) == before


def test_when_the_message_cannot_be_built_the_job_is_published_after_it_is_stored(service: JobService) -> None:
    service.enqueuer = TransactionalEnqueuer(broken=True)
    job, _ = _submit(service)
    assert service.enqueuer.sent == [(job.job_id, 1, "heuristic")]


def test_no_lane_for_the_kind_is_unprocessable(service: JobService) -> None:
    with pytest.raises(NoLaneCanSolve) as caught:
        _submit(service, solver="auto", caller=Caller(scopes=frozenset({"quantum:solve", "solver:qpu"})),
                problem={"kind": "cvrp", "locations": [[0, 0], [1, 1], [2, 2]], "demands": [0, 1, 1],
                         "vehicle_capacity": 2, "num_vehicles": 1})
    assert caught.value.reasons and caught.value.reasons[0]["loc"] == ["plan", "qpu"]


def test_no_live_worker_is_unavailable_with_retry(service: JobService) -> None:
    service.lanes = Lanes(alive=())
    with pytest.raises(NoLaneAvailable) as caught:
        _submit(service)
    assert caught.value.retry_after_s == 5


def test_quota_of_unfinished_jobs(service: JobService) -> None:
    service.config = ServiceConfig(max_active_jobs_per_tenant=2)
    _submit(service)
    _submit(service)
    with pytest.raises(QuotaExceeded):
        _submit(service)
    _submit(service, caller=Caller(tenant="other"))


def test_idempotency_replays_the_same_job_and_refuses_another_body(service: JobService) -> None:
    first, _ = _submit(service, key="k1", body={"a": 1})
    again, replayed = _submit(service, key="k1", body={"a": 1})
    assert replayed and again.job_id == first.job_id and len(service.enqueuer.sent) == 1
    with pytest.raises(IdempotencyConflict):
        _submit(service, key="k1", body={"a": 2})
    other, replayed = _submit(service, key="k1", body={"a": 1}, caller=Caller(tenant="acme2"))
    assert not replayed and other.job_id != first.job_id


def test_idempotency_hashes_canonical_json_so_key_order_and_number_form_do_not_matter(service: JobService) -> None:
    first, _ = _submit(service, key="k2", body={"a": 1.0, "b": [2]})
    again, replayed = _submit(service, key="k2", body={"b": [2], "a": 1})
    assert replayed and again.job_id == first.job_id


def test_an_admission_that_fails_releases_its_idempotency_key(service: JobService) -> None:
    service.lanes = Lanes(alive=())
    with pytest.raises(NoLaneAvailable):
        _submit(service, key="k3")
    service.lanes = Lanes()
    _, replayed = _submit(service, key="k3")
    assert not replayed


def _run(service: JobService, job: model.Job, runtime: Runtime | None = None) -> str:
    current = job.current
    return service.run_attempt(current.lane, job.job_id, current.n, "w1", runtime or Runtime())


def test_an_attempt_that_succeeds_ends_the_job_with_a_scored_loggable_result(service: JobService) -> None:
    job, _ = _submit(service)
    assert _run(service, job) == "succeeded"
    done = service.job_of("acme", job.job_id)
    assert done.status == "succeeded" and done.result["cost"] == pytest.approx(16.0)
    assert done.provenance.solver_details["energy"] is None  # inf made loggable
    json.loads(service.store.redis.get(f"qgate:job:{job.job_id}"), parse_constant=pytest.fail)


@pytest.mark.parametrize("runtime, outcome, reason", [
    (Runtime(FakeSolver("raise")), "failed", "RuntimeError: solver exploded"),
    (Runtime(FakeSolver("slow")), "timeout", "time limit of"),
    (Runtime(FakeSolver("bad")), "failed", "InvalidSolution"),
    (Runtime(fault=True), "failed", "injected fault"),
])
def test_an_attempt_that_does_not_answer_falls_back(service: JobService, runtime: Runtime, outcome: str,
                                                     reason: str) -> None:
    job, _ = _submit(service, solver="sim", problem={"kind": "qubo", "n": 2, "terms": [[0, 1, -1]]})
    assert job.current.lane == "sim"
    assert _run(service, job, runtime) == outcome
    after = service.job_of("acme", job.job_id)
    tried = [a for a in after.attempts if a.lane == "sim"][0]
    assert tried.outcome == outcome and reason in tried.reason
    assert after.current.lane == "heuristic" and service.enqueuer.sent[-1][2] == "heuristic"


def test_a_stale_or_redelivered_attempt_is_dropped(service: JobService) -> None:
    job, _ = _submit(service)
    assert _run(service, job) == "succeeded"
    assert _run(service, job) == "stale"
    assert service.run_attempt("heuristic", "f" * 32, 1, "w1", Runtime()) == "stale"


def test_an_attempt_whose_share_was_spent_in_the_queue_is_not_started(service: JobService) -> None:
    job, _ = _submit(service, budget_ms=200)
    time.sleep(0.25)
    assert _run(service, job) == "timeout"
    after = service.job_of("acme", job.job_id)
    assert after.status == "failed" and "in the heuristic queue" in after.attempts[0].reason


def test_lease_expiry_moves_the_job_on(service: JobService) -> None:
    job, _ = _submit(service, solver="sim", problem={"kind": "qubo", "n": 2, "terms": [[0, 1, -1]]})
    assert service.expire_leases(now=job.current.lease_until + 0.01) == 1
    after = service.job_of("acme", job.job_id)
    assert after.attempts[-1].outcome == "timeout" and after.current.lane == "heuristic"
    assert service.expire_leases(now=job.current.lease_until + 0.01) == 0


def test_a_lease_of_a_vanished_job_is_forgotten(service: JobService) -> None:
    service.store.redis.zadd(LEASES, {"a" * 32: 1.0})
    assert service.expire_leases(now=2.0) == 0
    assert service.store.redis.zscore(LEASES, "a" * 32) is None


def test_cancel_ends_an_unfinished_job_and_refuses_a_finished_one(service: JobService) -> None:
    job, _ = _submit(service)
    cancelled = service.cancel("acme", job.job_id)
    assert cancelled.status == "cancelled" and service.enqueuer.revoked == [f"{job.job_id}.1"]
    with pytest.raises(JobAlreadyFinished):
        service.cancel("acme", job.job_id)
    assert _run(service, job) == "stale"


def test_other_tenants_and_malformed_ids_are_not_found(service: JobService) -> None:
    job, _ = _submit(service)
    for tenant, job_id in (("other", job.job_id), ("acme", job.job_id + ":problem"), ("acme", "x")):
        with pytest.raises(JobNotFound):
            service.job_of(tenant, job_id)
        with pytest.raises(JobNotFound):
            service.cancel(tenant, job_id)


def test_a_calibration_snapshot_is_recorded_once_in_the_conclusions_transaction(service: JobService) -> None:
    snapshot = {"sha256": "ab" * 32, "backend": "fake_manila", "last_update_date": "2026-01-01"}
    runtime = Runtime(FakeSolver(calibration=snapshot))
    for _ in range(2):
        job, _ = _submit(service)
        assert _run(service, job, runtime) == "succeeded"
    events = [json.loads(fields["event"])["type"] for _, fields in service.store.redis.xrange("qgate:audit:events")]
    assert events.count("calibration.recorded") == 1
    assert json.loads(service.store.redis.get(calibration_key("ab" * 32)))["backend"] == "fake_manila"
    assert service.job_of("acme", job.job_id).provenance.calibration["sha256"] == "ab" * 32


def test_a_stale_conclusion_records_no_calibration(service: JobService) -> None:
    snapshot = {"sha256": "cd" * 32, "backend": "fake_manila"}
    job, _ = _submit(service)

    class CancelsMidSolve(FakeSolver):
        def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
            service.cancel("acme", job.job_id)
            return super().solve(problem, time_limit_s=time_limit_s, seed=seed)

    assert _run(service, job, Runtime(CancelsMidSolve(calibration=snapshot))) == "stale"
    assert service.store.redis.get(calibration_key("cd" * 32)) is None


def test_the_time_limit_passes_through_a_solvers_catch_all(service: JobService) -> None:
    """Solver and SDK code wraps ``except Exception``; the attempt's time limit must still surface as a
    timeout, not as the solver's own error (the emulated QPU re-wrapped it as QpuError)."""

    class CatchesEverything(FakeSolver):
        def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
            try:
                raise AttemptTimeLimit()
            except Exception as exc:  # what SDKs do
                raise RuntimeError(f"simulation error: {exc}") from exc

    job, _ = _submit(service)
    assert _run(service, job, Runtime(CatchesEverything())) == "timeout"
    assert "time limit of" in service.job_of("acme", job.job_id).attempts[0].reason


def test_a_cancelled_attempt_stops_and_the_stop_is_audited(service: JobService) -> None:
    job, _ = _submit(service)
    runtime = Runtime()

    class StopsWhenCancelled(FakeSolver):
        def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
            assert runtime.cancelled() is False
            service.cancel("acme", job.job_id)  # the client cancels while the solver runs
            assert runtime.cancelled() is True  # what the worker's cancellation watch asks
            raise AttemptCancelled()  # what the watch raises inside the solver

    runtime.solver = StopsWhenCancelled()
    assert _run(service, job, runtime) == "cancelled"
    done = service.job_of("acme", job.job_id)
    assert done.status == "cancelled" and done.attempts[0].outcome == "cancelled"
    events = [json.loads(fields["event"]) for _, fields in service.store.redis.xrange("qgate:audit:events")]
    stopped = [e for e in events if e["type"] == "attempt.stopped"]
    assert len(stopped) == 1 and stopped[0]["job_id"] == job.job_id
    assert stopped[0]["data"]["lane"] == "heuristic" and stopped[0]["data"]["ran_ms"] >= 0


def test_service_config_takes_the_settings_values_by_name() -> None:
    from settings import Settings

    settings = Settings.from_env({"QGATE_LEASE_GRACE_MS": "1234", "QGATE_MAX_ACTIVE_JOBS": "7",
                                  "QGATE_QPU_PRICE_PER_SHOT_USD": "0.5"})
    config = ServiceConfig.of(settings)
    assert (config.lease_grace_ms, config.max_active_jobs_per_tenant, config.qpu_price_per_shot_usd) == (1234, 7, 0.5)


def test_admission_dumps_and_canonicalises_the_problem_once(service: JobService, monkeypatch: Any) -> None:
    """The fingerprint and the content-addressed replay copy are the same bytes: a large problem pays
    for one model dump and one RFC 8785 encoding, not one per use."""
    import jobs.store
    import solvers.problems

    encoded: list[int] = []
    original = solvers.problems.fast_canonical_json

    def counting(data: Any) -> bytes:
        out = original(data)
        encoded.append(len(out))
        return out

    monkeypatch.setattr(solvers.problems, "fast_canonical_json", counting)
    monkeypatch.setattr(jobs.store, "canonical_json", counting)
    problem = {"kind": "tsp", "locations": [[i, (i * 7) % 11] for i in range(60)]}
    job, _ = _submit(service, problem=problem)
    problem_sized = [size for size in encoded if size > 300]  # the idempotency hash encodes the body
    assert len(problem_sized) == 1
    stored = service.store.canonical_problem(job.provenance.fingerprint)
    assert stored is not None and solvers.problems.fingerprint(parse_problem(json.loads(stored))) == \
        job.provenance.fingerprint
