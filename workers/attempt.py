"""The lane workers' side of an attempt: the solvers this process runs, its time limit and fault drills
(a ``LaneRuntime``), and the one service call a lane task makes."""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, Callable

import structlog

from workers.connections import get_redis
from jobs.spend import SpendSettlement
from jobs.store import JobStore
from orchestrator.evidence import PortfolioEvidence
from orchestrator.shadow import ShadowObserver
from routing.faults import FaultBoard, LaneFault
from routing.predict import PredictConfig
from routing.signals import LaneSignals
from orchestrator.service import InjectedFault, JobService, ServiceConfig
from settings import get_settings
from solvers.base import LaneLimits
from solvers.qpu_factory import make_qpu_adapter
from solvers.registry import lane_solvers
from telemetry import rollups, tracing
from workers.dispatch import CeleryEnqueuer
from workers.time_limit import alarm_at

log = structlog.get_logger("qgate.worker")


@lru_cache(maxsize=None)
def solvers_for(lane: str) -> list[Any]:
    """The lane's solvers, built once per worker process (the QPU adapter caches its noise model)."""
    if lane != "qpu":
        return lane_solvers(lane)
    settings = get_settings()
    adapter = make_qpu_adapter(settings.qpu_provider, backend_name=settings.qpu_backend,
                               queue_delay_s=settings.qpu_queue_delay_ms / 1000,
                               failure_rate=settings.qpu_failure_rate, env=os.environ)
    return lane_solvers(lane, adapter=adapter)


def lane_limits(lane: str) -> LaneLimits:
    """What this worker's lane can hold, as published in its heartbeat."""
    settings = get_settings()
    if lane == "qpu":
        return solvers_for(lane)[0].adapter.limits()
    if lane == "sim":
        return LaneLimits(max_qubits=settings.sim_max_qubits)
    return LaneLimits()


class WorkerRuntime:
    """The ``LaneRuntime`` of a Celery lane worker process."""

    def solvers(self, lane: str) -> list[Any]:
        return solvers_for(lane)

    def limits(self, lane: str) -> LaneLimits:
        return lane_limits(lane)

    def time_limit(self, deadline: float,
                   cancelled: Callable[[], bool] | None = None) -> AbstractContextManager[None]:
        return alarm_at(deadline, cancelled)

    def before_solve(self, lane: str) -> None:
        """The fault drills (``qgate faults``, else QGATE_FAULTS), read per attempt: sleep, or fail this
        share of attempts; on the emulated QPU, drift its readout."""
        fault = apply_drills(lane)
        delay_s = fault.delay_s()
        if delay_s:
            time.sleep(delay_s)
        if fault.fails():
            raise InjectedFault(f"injected fault: {lane}.fail_rate={fault.fail_rate}")


def apply_drills(lane: str) -> LaneFault:
    """The lane's drill now; its readout drift goes to every adapter of the lane that can emulate one."""
    fault = fault_board().fault(lane)
    for solver in solvers_for(lane):
        adapter = getattr(solver, "adapter", None)
        if hasattr(adapter, "readout_drift"):
            adapter.readout_drift = fault.readout_flip
    return fault


def provider_queue_figure(lane: str) -> dict[str, Any] | None:
    """The lane's provider queue figure (``queue_info()`` of its adapter) with a drill's delay added."""
    adapter = getattr(solvers_for(lane)[0], "adapter", None)
    info = adapter.queue_info() if adapter is not None else None
    delay_s = fault_board().fault(lane).delay_ms / 1000
    if info is None and not delay_s:
        return None
    figure = info.as_dict() if info is not None else {"source": "drill"}
    if delay_s:
        figure["wait_s"] = round(float(figure.get("wait_s") or 0.0) + delay_s, 3)
        figure["source"] += f" + drill delay {delay_s:g} s"
    return figure


@lru_cache(maxsize=1)
def fault_board() -> FaultBoard:
    return FaultBoard(get_redis(), get_settings().faults)


@lru_cache(maxsize=1)
def job_service() -> JobService:
    """The process's service, wired to Redis and Celery."""
    settings = get_settings()
    rollups.configure(settings.history_days)
    signals = LaneSignals(get_redis(), PredictConfig.of(settings))
    observers = [*signals.observers(), SpendSettlement(), ShadowObserver(settings.history_days),
                 PortfolioEvidence(settings.history_days)]
    return JobService(JobStore(get_redis(), settings.job_ttl_s, observers),
                      CeleryEnqueuer(settings.lease_grace_ms), ServiceConfig.of(settings), log=log, signals=signals)


def run_attempt(lane: str, job_id: str, attempt: int, worker: str) -> str:
    """What a lane task does: one service call, with the log bound to the attempt."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, lane=lane, attempt=attempt)
    with tracing.span("qgate.attempt", lane=lane, job_id=job_id, attempt=attempt):
        return job_service().run_attempt(lane, job_id, attempt, worker, WorkerRuntime())
