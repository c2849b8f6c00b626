"""One lane attempt, from start to its atomic conclusion. Shared by the lane task modules."""

from __future__ import annotations

import functools
import json
import random
import time
from functools import lru_cache
from typing import Any, Callable, TypeVar

import redis
import structlog

from audit.channel import emit
from jobs import model
from jobs.connection import get_redis
from jobs.store import JobStore
from routing import fallback
from settings import get_settings
from solvers.base import LaneLimits, SolverRefused
from solvers.objective import loggable, score
from solvers.problems import parse_problem
from solvers.registry import choose_solver, lane_solvers
from workers.dispatch import enqueue_current
from workers.time_limit import AttemptTimeLimit, alarm_at

log = structlog.get_logger("qgate.worker")
SOLVE_MARGIN_S = fallback.MIN_RUN_S
ALARM_SLACK_S = 0.25  # solvers honour their own limit; the alarm is for one that does not
REDIS_PATIENCE_S = 30.0  # how long a task waits out Redis before its attempt is left to the watchdog
T = TypeVar("T")


class InjectedFault(Exception):
    """A failure drawn from QGATE_FAULTS, for drills and tests."""


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(get_redis(), get_settings().job_ttl_s)


@lru_cache(maxsize=None)
def solvers_for(lane: str) -> list[Any]:
    """The lane's solvers, built once per worker process (the QPU adapter caches its noise model)."""
    settings = get_settings()
    if lane == "qpu" and settings.qpu_provider == "ibm":
        from solvers.qpu_ibm import IbmQuantumQpu

        return lane_solvers(lane, adapter=IbmQuantumQpu.from_env())
    if lane == "qpu" and settings.qpu_provider == "braket":
        from solvers.qpu_braket import BraketQpu

        return lane_solvers(lane, adapter=BraketQpu.from_env())
    if lane == "qpu":
        return lane_solvers(lane, backend_name=settings.qpu_backend,
                            queue_delay_s=settings.qpu_queue_delay_ms / 1000,
                            failure_rate=settings.qpu_failure_rate)
    return lane_solvers(lane)


def lane_limits(lane: str) -> LaneLimits:
    """What this worker's lane can hold, as published in its heartbeat."""
    settings = get_settings()
    if lane == "qpu":
        return solvers_for(lane)[0].adapter.limits()
    if lane == "sim":
        return LaneLimits(max_qubits=settings.sim_max_qubits)
    return LaneLimits()


def _apply_fault(lane: str) -> None:
    fault = get_settings().fault(lane)
    if fault.delay_ms:
        time.sleep(fault.delay_ms / 1000)
    if fault.fail_rate and random.random() < fault.fail_rate:
        raise InjectedFault(f"injected fault: {lane}.fail_rate={fault.fail_rate}")


def _with_redis(action: Callable[[], T], until: float, what: str) -> T:
    """Run ``action``, retrying while Redis is restarting, paused or failing over, until ``until``.

    Past ``until`` the attempt's lease is over and the watchdog concludes it, so giving up then loses
    nothing; raising earlier would end the task with an error while Redis is merely away.
    """
    delay = 0.1
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            if time.time() + delay >= until:
                raise
            log.warning("redis_unavailable", doing=what, error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def run_attempt(lane: str, job_id: str, attempt: int, worker: str) -> str:
    """Run attempt ``attempt`` of ``job_id`` on ``lane``; returns its outcome (or ``stale``)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, lane=lane, attempt=attempt)
    store = job_store()
    grace_ms = get_settings().lease_grace_ms
    try:
        job = _with_redis(lambda: store.transition(job_id, fallback.begin_attempt, attempt, worker, grace_ms),
                          time.time() + REDIS_PATIENCE_S, "start the attempt")
    except (model.Conflict, KeyError) as exc:
        log.info("attempt_stale", reason=str(exc))
        return "stale"
    structlog.contextvars.bind_contextvars(tenant=job["tenant"])
    current = job.get("current")
    if not current or current["n"] != attempt:
        log.info("attempt_expired_in_queue", reason=job["attempts"][-1]["reason"], status=job["status"])
        _publish_next(job)
        return "timeout"
    log.info("attempt_started")
    outcome, reason, solver_info, result, provenance = _solve(lane, job_id, job)
    conclude = functools.partial(store.transition, job_id, fallback.conclude_attempt, attempt, outcome, reason,
                                 grace_ms, solver=solver_info, result=result, provenance=provenance)
    try:
        try:
            job = _with_redis(conclude, current["lease_until"], "conclude the attempt")
        except ValueError as exc:  # the answer holds what JSON cannot carry: the attempt failed, not the job
            outcome, reason = "failed", f"the answer cannot be stored: {exc}"[:300]
            job = _with_redis(functools.partial(store.transition, job_id, fallback.conclude_attempt, attempt,
                                                outcome, reason, grace_ms, solver=solver_info),
                              current["lease_until"], "conclude the attempt")
    except (model.Conflict, KeyError) as exc:
        log.info("attempt_discarded", outcome=outcome, reason=str(exc))
        return "stale"
    log.info("attempt_finished", outcome=outcome, reason=reason, status=job["status"])
    _publish_next(job)
    return outcome


def _publish_next(job: dict[str, Any]) -> None:
    """Send the job's next attempt, if it has one. A message that cannot be published is not lost work:
    its lease is in the watchdog's set, which concludes it when the lease runs out."""
    try:
        enqueue_current(job)
    except Exception as exc:  # kombu.exceptions.OperationalError and friends: the broker is away
        log.error("enqueue_failed", error=f"{type(exc).__name__}: {exc}")


def _solve(lane: str, job_id: str, job: dict[str, Any]) -> tuple[str, str, Any, Any, Any]:
    """Returns (outcome, reason, solver info, scored result, provenance additions)."""
    solver_info = None
    deadline = job["current"]["deadline"]
    try:
        problem = parse_problem(_with_redis(lambda: job_store().problem(job_id), deadline, "read the problem"))
        with alarm_at(deadline + ALARM_SLACK_S):
            _apply_fault(lane)
            solver, verdict = choose_solver(lane, problem, lane_limits(lane), solvers_for(lane))
            if solver is None:
                return "skipped", verdict.reason, None, None, None
            solver_info = {"lane": lane, "id": solver.id, "version": solver.version}
            time_left = deadline - time.time() - SOLVE_MARGIN_S
            if time_left <= 0:
                return "timeout", "the attempt's time limit was reached before its solver started", solver_info, None, None
            solution = solver.solve(problem, time_limit_s=time_left, seed=job["request"].get("seed"))
        seed = job["request"].get("seed")
        result = score(problem, solution.result)
        details = loggable(solution.details)
        provenance = {"seed": details.get("seed", seed), "solver_details": details,
                      "calibration": _record_calibration(job, loggable(solution.calibration))}
        return "succeeded", "", solver_info, result, provenance
    except AttemptTimeLimit:
        return "timeout", f"time limit of {job['current']['limit_ms']} ms reached", solver_info, None, None
    except SolverRefused as exc:
        return "skipped", str(exc), solver_info, None, None
    except TimeoutError as exc:
        return "timeout", str(exc) or "the solver ran out of time", solver_info, None, None
    except InjectedFault as exc:
        return "failed", str(exc), solver_info, None, None
    except Exception as exc:  # any solver error ends this attempt, never the job: the next lane takes over
        log.exception("attempt_error")
        return "failed", f"{type(exc).__name__}: {exc}"[:500], solver_info, None, None


def _record_calibration(job: dict[str, Any], snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """Store a QPU calibration snapshot once (audited once) and reference it from the job by hash."""
    if not snapshot:
        return None
    digest = snapshot.get("sha256") or ""
    key = f"qgate:calibration:{digest}"
    client = get_redis()
    if client.set(key, json.dumps(snapshot), nx=True):
        emit(client, "calibration.recorded", job_id=job["job_id"], tenant=job["tenant"], snapshot=snapshot)
    return {"sha256": digest, "backend": snapshot.get("backend"),
            "last_update_date": snapshot.get("last_update_date")}
