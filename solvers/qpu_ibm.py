"""IBM Quantum devices through qiskit-ibm-runtime.

`IbmQuantumQpu` submits ISA circuits with the runtime's client-side Sampler primitive
(``qiskit_ibm_runtime.executor_sampler.Sampler``: the successor of ``SamplerV2``, which is deprecated
since qiskit-ibm-runtime 0.50). It runs either against a real device obtained from a
``QiskitRuntimeService`` or, with ``backend=`` a fake backend, in the runtime's local testing mode, where
the same primitive runs the circuit on Aer with the fake device's noise model.

Credentials come from `IbmQuantumQpu.from_env`; the token goes to the service and nowhere else: it is
kept out of ``repr``, returned dicts and `QpuError` messages (messages from the runtime are redacted).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from solvers.aer import normalise_counts, simulator_seed
from solvers.base import LaneLimits
from solvers.capability import package_version
from solvers.problems import MAX_SHOTS, canonical_json
from solvers.qpu import Price, QpuAdapter, QpuError, device_calibration

# qiskit-ibm-runtime 0.51's default channel (``accounts.management._DEFAULT_CHANNEL_TYPE``).
DEFAULT_CHANNEL = "ibm_quantum_platform"

# IBM bills per QPU second under a contract, not per shot; there is no public per-shot price to encode.
# Deployments must replace this entry (or pass ``price=``) with figures from their own agreement.
IBM_PRICE = Price(0.0, 0.0, "configure per contract")

# Runtime job status -> lane job state. RuntimeJobV2.status() returns these strings; local-mode jobs
# return qiskit's JobStatus enum, whose names are the same words (plus VALIDATING).
_STATES = {
    "INITIALIZING": "queued",
    "VALIDATING": "queued",
    "QUEUED": "queued",
    "RUNNING": "running",
    "DONE": "done",
    "ERROR": "failed",
    "CANCELLED": "cancelled",
}


def job_state(status: Any) -> str:
    """The lane state for a runtime job status (string or ``JobStatus`` enum)."""
    key = str(getattr(status, "name", status)).upper()
    try:
        return _STATES[key]
    except KeyError:
        raise QpuError(f"unrecognised IBM job status {key!r}") from None


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class IbmQuantumQpu(QpuAdapter):
    """One IBM Quantum device (or, with ``backend=``, a fake device in local testing mode).

    Exactly one of ``service`` (real device ``backend_name`` looked up on first use) or ``backend``
    (a backend instance, e.g. ``FakeManilaV2()``, run locally) is given. Job handles are runtime job ids.
    """

    max_jobs_kept = 256

    def __init__(self, backend_name: str | None = None, *, service: Any = None, backend: Any = None,
                 max_depth: int = 2000, price: Price | None = None,
                 redact: tuple[str, ...] = ()) -> None:
        if (service is None) == (backend is None):
            raise ValueError("give exactly one of service= or backend=")
        if backend is None and not backend_name:
            raise ValueError("backend_name is required with service=")
        self.backend_name = backend_name or backend.name
        self.max_depth = max_depth
        self.price = price or IBM_PRICE
        self._service = service
        self._given_backend = backend
        self._redact = tuple(redact)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Any] = OrderedDict()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 service_factory: Callable[..., Any] | None = None, **options: Any) -> IbmQuantumQpu:
        """An adapter for a real device configured from the environment.

        Reads ``QGATE_IBM_TOKEN`` (or ``QGATE_IBM_TOKEN_FILE``, a file holding the token),
        ``QGATE_IBM_INSTANCE``, ``QGATE_IBM_CHANNEL`` (default ``ibm_quantum_platform``) and
        ``QGATE_IBM_BACKEND``. ``service_factory`` defaults to ``QiskitRuntimeService`` (which contacts
        IBM when constructed); errors from it are raised as `QpuError` with the token redacted.
        """
        env = os.environ if env is None else env
        token = env.get("QGATE_IBM_TOKEN", "").strip()
        if not token and env.get("QGATE_IBM_TOKEN_FILE"):
            token = Path(env["QGATE_IBM_TOKEN_FILE"]).read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError("set QGATE_IBM_TOKEN or QGATE_IBM_TOKEN_FILE")
        backend_name = env.get("QGATE_IBM_BACKEND", "").strip()
        if not backend_name:
            raise ValueError("set QGATE_IBM_BACKEND")
        if service_factory is None:
            from qiskit_ibm_runtime import QiskitRuntimeService

            service_factory = QiskitRuntimeService
        try:
            service = service_factory(channel=env.get("QGATE_IBM_CHANNEL") or DEFAULT_CHANNEL,
                                      token=token, instance=env.get("QGATE_IBM_INSTANCE") or None)
        except Exception as exc:  # any failure to authenticate surfaces as one provider error
            raise QpuError(f"IBM Quantum service unavailable: {type(exc).__name__}: "
                           f"{_redact(str(exc), (token,))}") from None
        return cls(backend_name, service=service, redact=(token,), **options)

    def __repr__(self) -> str:
        mode = "local" if self.local else "service"
        return f"IbmQuantumQpu(backend_name={self.backend_name!r}, mode={mode!r})"

    @property
    def name(self) -> str:
        return self.backend_name

    @property
    def version(self) -> str:
        return f"qiskit-ibm-runtime {package_version('qiskit-ibm-runtime')}"

    @property
    def local(self) -> bool:
        """True in local testing mode (a fake backend run on this machine)."""
        return self._service is None

    @cached_property
    def backend(self) -> Any:
        if self._given_backend is not None:
            return self._given_backend
        try:
            return self._service.backend(self.backend_name)
        except Exception as exc:  # unknown backend, auth or network: one provider error
            raise self._error(f"backend {self.backend_name} unavailable", exc) from None

    def _error(self, what: str, exc: BaseException) -> QpuError:
        return QpuError(f"IBM {what}: {type(exc).__name__}: {_redact(str(exc), self._redact)}")

    def transpile(self, circuit: Any, seed: int | None) -> Any:
        from qiskit.transpiler import generate_preset_pass_manager

        manager = generate_preset_pass_manager(optimization_level=1, backend=self.backend,
                                               seed_transpiler=simulator_seed(seed))
        return manager.run(circuit)

    def _run(self, circuit: Any, shots: int, seed: int | None) -> Any:
        """Submit one pub to the Sampler primitive; returns the runtime job."""
        from qiskit_ibm_runtime.executor_sampler import Sampler

        sampler = Sampler(mode=self.backend)
        if self.local:
            # Only the local simulator samples from a seed; a device's shots are physical.
            sampler.options.simulator.seed_simulator = simulator_seed(seed)
        return sampler.run([circuit], shots=shots)

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        try:
            job = self._run(circuit, shots, seed)
            handle = str(job.job_id())
        except QpuError:
            raise
        except Exception as exc:  # the runtime raises assorted types on submission
            raise self._error(f"submission to {self.backend_name} failed", exc) from None
        with self._lock:
            self._jobs[handle] = job
            while len(self._jobs) > self.max_jobs_kept:
                self._jobs.popitem(last=False)
        return handle

    def _job(self, handle: str) -> Any:
        with self._lock:
            job = self._jobs.get(handle)
        if job is not None:
            return job
        if self.local:
            raise QpuError(f"unknown job {handle!r} on {self.backend_name}")
        try:
            return self._service.job(handle)
        except Exception as exc:
            raise self._error(f"job {handle!r} not found on {self.backend_name}", exc) from None

    def poll(self, handle: str) -> str:
        job = self._job(handle)
        try:
            status = job.status()
        except Exception as exc:
            raise self._error(f"status of job {handle} failed", exc) from None
        return job_state(status)

    def result(self, handle: str) -> dict[str, int]:
        job = self._job(handle)
        state = self.poll(handle)
        if state in ("queued", "running", "cancelled"):
            raise QpuError(f"job {handle} is {state}, not done")
        try:
            pub = job.result()[0]
        except Exception as exc:  # RuntimeJobFailureError, RuntimeJobTimeoutError, local errors...
            raise self._error(f"job {handle} on {self.backend_name} failed", exc) from None
        if state == "failed":
            raise QpuError(f"IBM job {handle} on {self.backend_name} failed")
        if not list(pub.data.keys()):
            raise QpuError(f"job {handle} measured no classical bits")
        # join_data concatenates the registers with the first register in the lowest bits, which is
        # qiskit's count-key order once the spaces between registers are removed.
        return normalise_counts(pub.join_data().get_counts())

    def cancel(self, handle: str) -> None:
        job = self._job(handle)
        if self.poll(handle) in ("done", "failed", "cancelled"):
            return
        try:
            job.cancel()
        except Exception as exc:
            from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

            if isinstance(exc, RuntimeInvalidStateError):  # finished between poll and cancel
                return
            raise self._error(f"cancel of job {handle} failed", exc) from None

    def limits(self) -> LaneLimits:
        max_shots = getattr(self.backend, "max_shots", None)
        if max_shots is None and hasattr(self.backend, "configuration"):
            max_shots = getattr(self.backend.configuration(), "max_shots", None)
        return LaneLimits(max_qubits=self.backend.num_qubits, max_depth=self.max_depth,
                          max_shots=min(int(max_shots or MAX_SHOTS), MAX_SHOTS))

    def calibration_snapshot(self) -> dict[str, Any]:
        """The device calibration, plus whether shots from this adapter can be replayed from a seed."""
        snapshot = device_calibration(self.backend)
        snapshot["provenance"] = self.run_provenance()
        snapshot["sha256"] = hashlib.sha256(canonical_json(snapshot)).hexdigest()
        return snapshot

    def run_provenance(self) -> dict[str, Any]:
        """How reproducible this adapter's counts are: seeded in local mode, physical on a device."""
        if self.local:
            return {"mode": "local", "seeded": True, "reproducible": True,
                    "note": "local testing mode: Aer with the fake device's noise model, "
                            "seed_simulator derived from the job seed"}
        return {"mode": "device", "seeded": False, "reproducible": False,
                "note": "shots on quantum hardware are not reproducible from a seed"}
