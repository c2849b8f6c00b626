"""What every QPU adapter shares: the `QpuAdapter` base and the shapes around it.

An adapter is one quantum provider/device behind one interface (submit/poll/result/cancel, limits,
calibration and price). The base holds what is the same for every provider:

- transpiling to the device target, seeded (`QpuAdapter.transpile` over the adapter's `transpile_target`);
- the bounded table of the provider jobs an adapter has submitted (`JobTable`, `QpuAdapter.max_jobs_kept`);
- redaction of credentials from errors and ``repr`` (`redact_secrets`, `QpuAdapter.provider_errors`);
- the calibration snapshot, stamped with the sha256 of its canonical JSON (`QpuAdapter.calibration_snapshot`);
- the lane limits and the cost estimate built from the device's own figures.

An adapter keeps only what is its own: how it submits, polls, fetches and cancels, how the provider's
job states map to the lane's, what its device's calibration and run provenance are. Which adapter a
provider name means is decided in one place, `solvers.qpu_factory`.

This module imports no provider SDK and no qiskit at import time.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from solvers.aer import simulator_seed
from solvers.base import LaneLimits
from solvers.capability import package_version, qpu_useful_two_qubit_gates
from solvers.problems import MAX_SHOTS, canonical_json

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL_STATES = frozenset({"done", "failed", "cancelled"})
REDACTED = "***"


@dataclass(frozen=True)
class ProviderQueue:
    """What a provider says of its queue: jobs waiting ahead of a new one, and/or the wait it expects."""

    source: str
    pending_jobs: int | None = None
    wait_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("source", self.source), ("pending_jobs", self.pending_jobs),
                                  ("wait_s", self.wait_s)) if v is not None}


class QpuError(Exception):
    """The provider failed a job, cancelled it, or does not know it."""


@dataclass(frozen=True)
class Price:
    """A device's price: a fixed charge per task plus a charge per shot, and where the figures come from."""

    per_task_usd: float
    per_shot_usd: float
    basis: str


# Prices by device name. Real adapters add their devices here (or pass ``price=``); fake devices are free.
PRICES: dict[str, Price] = {
    "emulated": Price(0.0, 0.0, "emulated device: no charge"),
}


def redact_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def env_secrets(names: Iterable[str], *envs: Mapping[str, str]) -> tuple[str, ...]:
    """The non-empty values of the variables ``names`` in each of ``envs`` (default: the process's)."""
    return tuple(value for env in (envs or (os.environ,)) for name in names if (value := env.get(name)))


def lane_states(**provider_states: Iterable[str]) -> dict[str, str]:
    """A provider's state names (upper case) -> lane job states, written per lane state:
    ``lane_states(queued=("CREATED", "QUEUED"), running=("RUNNING",), ...)``; every lane state appears."""
    if set(provider_states) != set(JOB_STATES):
        raise ValueError(f"lane_states needs exactly {JOB_STATES}, got {tuple(provider_states)}")
    return {name.upper(): lane for lane, names in provider_states.items() for name in names}


def lane_state(states: Mapping[str, str], status: Any, what: str) -> str:
    """The lane state for a provider ``status`` (a string, or an enum whose ``name`` is one) from
    ``states`` (see `lane_states`); `QpuError` ``unrecognised {what} ...`` for any other."""
    key = str(getattr(status, "name", status)).upper()
    try:
        return states[key]
    except KeyError:
        raise QpuError(f"unrecognised {what} {key!r}") from None


def stamp_sha256(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with ``sha256``: the digest of its canonical JSON (RFC 8785), taken before the stamp."""
    snapshot["sha256"] = hashlib.sha256(canonical_json(snapshot)).hexdigest()
    return snapshot


class JobTable:
    """The provider jobs an adapter remembers, by handle; beyond ``max_kept`` the oldest is dropped.

    A dropped job is one the gateway has long given up on (its attempt timed out or concluded), so the
    table bounds a long-running worker's memory without losing anything a live attempt asks for.
    """

    def __init__(self, max_kept: int) -> None:
        if max_kept < 1:
            raise ValueError("max_kept must be at least 1")
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def add(self, handle: str, entry: Any) -> None:
        with self._lock:
            self._entries[handle] = entry
            while len(self._entries) > self.max_kept:
                self._entries.popitem(last=False)

    def get(self, handle: str) -> Any | None:
        with self._lock:
            return self._entries.get(handle)

    def __contains__(self, handle: object) -> bool:
        with self._lock:
            return handle in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _num(value: Any, digits: int = 6) -> float | None:
    """A float rounded to ``digits`` significant digits; None when missing or not finite (JSON-safe)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _summary(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "mean": _num(sum(values) / len(values)),
            "min": _num(min(values)), "max": _num(max(values))}


def device_calibration(backend: Any) -> dict[str, Any]:
    """A qiskit backend's compact calibration record: per-qubit T1/T2 (µs) and readout error, per-gate
    error summaries. For adapters whose device is a qiskit ``BackendV2`` (a fake or an IBM device)."""
    target = backend.target
    props = backend.properties()
    updated = getattr(props, "last_update_date", None)
    qubit_props = target.qubit_properties or [None] * target.num_qubits
    measure = target["measure"] if "measure" in target.operation_names else {}
    qubits = []
    for q in range(target.num_qubits):
        qp = qubit_props[q]
        readout = measure.get((q,)) if measure else None
        qubits.append({
            "qubit": q,
            "t1_us": _num(qp.t1 * 1e6) if qp is not None and qp.t1 is not None else None,
            "t2_us": _num(qp.t2 * 1e6) if qp is not None and qp.t2 is not None else None,
            "readout_error": _num(readout.error) if readout is not None else None,
        })
    gates = {}
    for name in sorted(target.operation_names):
        errors = [p.error for p in target[name].values()
                  if p is not None and p.error is not None and math.isfinite(p.error)]
        if errors and name != "measure":
            gates[name] = _summary(errors)
    return {
        "backend": backend.name,
        "backend_version": str(getattr(backend, "backend_version", "")),
        "num_qubits": target.num_qubits,
        "last_update_date": updated.isoformat() if updated is not None else None,
        "qubits": qubits,
        "gate_errors": gates,
    }


class QpuAdapter(ABC):
    """One quantum provider/device. Handles are opaque strings; ``poll`` returns one of `JOB_STATES`.

    Subclasses call ``super().__init__`` (which sets up the job table, the depth limit and the secrets
    to redact) and implement the provider's own part: `name`, `transpile_target`, `submit`, `poll`,
    `result`, `cancel`, `calibration`, `device_limits`, and `from_env` or `configured`.
    """

    price: Price = PRICES["emulated"]
    # How many recent provider jobs an adapter remembers (`JobTable`); read when the adapter is built.
    max_jobs_kept = 256
    # What the adapter's errors name the provider as: ``IBM status of job x failed: ...``.
    provider_label = "QPU"
    # Environment variables holding credentials of this provider: their values, read when an error is
    # built, are redacted from it (as is every value given as ``redact=``).
    secret_env_vars: tuple[str, ...] = ()
    # The shortest pause between two polls of a job that the provider wants (the solver's own is shorter).
    poll_interval_s = 0.0

    def __init__(self, *, max_depth: int = 2000, redact: Iterable[str] = ()) -> None:
        self.max_depth = max_depth
        self.jobs = JobTable(self.max_jobs_kept)
        self._redact = tuple(secret for secret in redact if secret)

    # ------------------------------------------------------------------ construction

    @classmethod
    def configured(cls, *, backend_name: str, queue_delay_s: float, failure_rate: float,
                   env: Mapping[str, str]) -> QpuAdapter:
        """The adapter a worker runs, from plain configuration values (`solvers.qpu_factory`).

        ``backend_name``, ``queue_delay_s`` and ``failure_rate`` shape an emulated device (whose adapter
        overrides this); a real provider reads its device and credentials from ``env`` (`from_env`).
        """
        return cls.from_env(env)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> QpuAdapter:
        """An adapter for the device and credentials named in ``env`` (default: the process's)."""
        raise NotImplementedError(f"{cls.__name__} is not configured from the environment")

    # ------------------------------------------------------------------ identity, redaction

    @property
    @abstractmethod
    def name(self) -> str:
        """The device name, e.g. ``fake_manila``."""

    @property
    def version(self) -> str:
        return "unknown"

    def describe(self) -> dict[str, Any]:
        """The fields ``repr`` shows: never a credential."""
        return {"name": self.name}

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.describe().items())
        return self.redact(f"{type(self).__name__}({fields})")

    def secrets(self) -> tuple[str, ...]:
        """The credential values to keep out of errors and ``repr``."""
        return self._redact + env_secrets(self.secret_env_vars)

    def redact(self, text: str) -> str:
        return redact_secrets(text, self.secrets())

    def _error(self, what: str, exc: BaseException) -> QpuError:
        """One provider error for ``exc``: ``{provider} {what}: {type}: {message}``, credentials redacted."""
        return QpuError(f"{self.provider_label} {what}: {type(exc).__name__}: {self.redact(str(exc))}")

    @contextmanager
    def provider_errors(self, what: str) -> Iterator[None]:
        """Any exception raised inside, other than a `QpuError`, leaves as one redacted `QpuError`."""
        try:
            yield
        except QpuError:
            raise
        except Exception as exc:  # provider SDKs raise assorted types; the caller sees one provider error
            raise self._error(what, exc) from None

    # ------------------------------------------------------------------ transpiling

    @abstractmethod
    def transpile_target(self) -> dict[str, Any]:
        """What the transpiler compiles for: ``{"backend": backend}`` or ``{"target": target}``."""

    def transpile(self, circuit: Any, seed: int | None) -> Any:
        """The circuit rewritten for the device's gates and couplings (an ISA circuit), seeded."""
        from qiskit.transpiler import generate_preset_pass_manager

        manager = generate_preset_pass_manager(optimization_level=1, seed_transpiler=simulator_seed(seed),
                                               **self.transpile_target())
        return manager.run(circuit)

    # ------------------------------------------------------------------ jobs

    @contextmanager
    def attempt(self, deadline: float) -> Iterator[None]:
        """Around the calls an attempt makes (``deadline`` on ``time.monotonic``). An adapter whose calls
        block on a network bounds them by it; one that holds per-attempt state (a TLS identity) sets it
        here. The default has nothing to do."""
        yield

    @abstractmethod
    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        """Queue an ISA circuit; return the job handle."""

    @abstractmethod
    def poll(self, handle: str) -> str:
        """The job's state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``."""

    @abstractmethod
    def result(self, handle: str) -> dict[str, int]:
        """Counts of a done job; raises `QpuError` for a failed, cancelled or unknown job."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Ask the provider to drop the job (a no-op once it has finished)."""

    def _remember(self, handle: str, entry: Any) -> str:
        """Keep ``entry`` (the provider's job, or what the adapter needs of it) under ``handle``."""
        self.jobs.add(handle, entry)
        return handle

    def _known(self, handle: str) -> Any:
        """The entry kept under ``handle``; `QpuError` ``unknown job`` when there is none (or no longer)."""
        entry = self.jobs.get(handle)
        if entry is None:
            raise QpuError(f"unknown job {handle!r} on {self.name}")
        return entry

    @staticmethod
    def _not_done(handle: str, state: str) -> QpuError:
        return QpuError(f"job {handle} is {state}, not done")

    def _cancel_unfinished(self, handle: str, cancel: Callable[[], Any], noun: str = "job") -> None:
        """Call the provider's ``cancel`` unless the job has already finished; errors as `provider_errors`."""
        if self.poll(handle) in TERMINAL_STATES:
            return
        with self.provider_errors(f"cancel of {noun} {handle} failed"):
            cancel()

    # ------------------------------------------------------------------ device facts

    def sampling_seconds(self, qubits: int, two_qubit_gates: int, shots: int) -> float | None:
        """Expected seconds this machine spends producing ``shots`` samples of a QAOA circuit with these
        gates (before routing); None where the device, not this machine, does the work."""
        return None

    def queue_info(self) -> ProviderQueue | None:
        """The provider's own figure for its queue (None: it gives none). Called by the worker's heartbeat
        thread, outside any attempt; a provider error propagates and the beat skips the figure."""
        return None

    @abstractmethod
    def device_limits(self) -> tuple[int | None, int | None]:
        """The device's qubit count and maximum shots per task (None where it does not say)."""

    def limits(self) -> LaneLimits:
        """What the device accepts: qubits, transpiled depth, shots (never above the gateway's cap)."""
        max_qubits, max_shots = self.device_limits()
        return LaneLimits(max_qubits=max_qubits, max_depth=self.max_depth,
                          max_shots=min(int(max_shots or MAX_SHOTS), MAX_SHOTS),
                          max_two_qubit_gates=qpu_useful_two_qubit_gates(self.median_two_qubit_error()))

    def median_two_qubit_error(self) -> float | None:
        """The device's median two-qubit gate error (what bounds a useful circuit); None: not known."""
        return None

    @abstractmethod
    def calibration(self) -> dict[str, Any]:
        """The device's current calibration record (a fresh dict), small enough to store with each result."""

    def run_provenance(self) -> dict[str, Any] | None:
        """How reproducible this adapter's counts are, recorded in each snapshot; None: not recorded."""
        return None

    def calibration_snapshot(self) -> dict[str, Any]:
        """`calibration` plus `run_provenance` (when given), stamped with its sha256."""
        snapshot = self.calibration()
        provenance = self.run_provenance()
        if provenance is not None:
            snapshot["provenance"] = provenance
        return stamp_sha256(snapshot)

    def cost_estimate(self, shots: int) -> dict[str, Any]:
        """Price of one task of ``shots`` shots from `price`."""
        usd = self.price.per_task_usd + self.price.per_shot_usd * shots
        return {"usd": round(usd, 6), "basis": self.price.basis}


_UNKNOWN = object()


class QiskitBackendQpu(QpuAdapter):
    """An adapter whose device is a qiskit ``BackendV2`` (`backend`) named `backend_name`: a fake IBM
    device or a real one. Transpiles for the backend, reads its limits and calibration from it."""

    backend_name: str
    _median_two_qubit_error: Any = _UNKNOWN

    @property
    @abstractmethod
    def backend(self) -> Any:
        """The qiskit backend (built on first use by the subclass)."""

    @property
    def name(self) -> str:
        return self.backend_name

    @property
    def version(self) -> str:
        return f"qiskit-ibm-runtime {package_version('qiskit-ibm-runtime')}"

    def transpile_target(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def device_limits(self) -> tuple[int | None, int | None]:
        max_shots = getattr(self.backend, "max_shots", None)
        if max_shots is None and hasattr(self.backend, "configuration"):
            max_shots = getattr(self.backend.configuration(), "max_shots", None)
        return self.backend.num_qubits, max_shots

    def calibration(self) -> dict[str, Any]:
        return device_calibration(self.backend)

    def median_two_qubit_error(self) -> float | None:
        if self._median_two_qubit_error is _UNKNOWN:
            self._median_two_qubit_error = target_median_two_qubit_error(self.backend.target)
        return self._median_two_qubit_error  # type: ignore[return-value]



def target_median_two_qubit_error(target: Any) -> float | None:
    """The median error of a qiskit target's two-qubit gates (errors of 1 mark broken couplings: left out)."""
    errors = sorted(props.error for name in target.operation_names if name != "measure"
                    for qargs, props in (target[name] or {}).items()
                    if qargs is not None and len(qargs) == 2 and props is not None
                    and props.error is not None and 0.0 <= props.error < 1.0)
    return statistics.median(errors) if errors else None
