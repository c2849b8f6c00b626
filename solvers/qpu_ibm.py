"""IBM Quantum devices through qiskit-ibm-runtime.

`IbmQuantumQpu` submits ISA circuits with the runtime's client-side Sampler primitive
(``qiskit_ibm_runtime.executor_sampler.Sampler``: the successor of ``SamplerV2``, which is deprecated
since qiskit-ibm-runtime 0.50). It runs either against a real device obtained from a
``QiskitRuntimeService`` or, with ``backend=`` a fake backend, in the runtime's local testing mode, where
the same primitive runs the circuit on Aer with the fake device's noise model.

Credentials come from `IbmQuantumQpu.from_env`; the token goes to the service and nowhere else: it is
kept out of ``repr``, returned dicts and `QpuError` messages (messages from the runtime are redacted by
the `QpuAdapter` base, as are transpiling, the job table and the calibration snapshot's stamp).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from solvers.aer import normalise_counts, simulator_seed
from solvers.qpu_base import Price, ProviderQueue, QiskitBackendQpu, QpuError, lane_state, lane_states, redact_secrets

# qiskit-ibm-runtime 0.51's default channel (``accounts.management._DEFAULT_CHANNEL_TYPE``).
DEFAULT_CHANNEL = "ibm_quantum_platform"

# IBM bills per QPU second under a contract, not per shot; there is no public per-shot price to encode.
# Deployments must replace this entry (or pass ``price=``) with figures from their own agreement.
IBM_PRICE = Price(0.0, 0.0, "configure per contract")

# Runtime job status -> lane job state. RuntimeJobV2.status() returns these strings; local-mode jobs
# return qiskit's JobStatus enum, whose names are the same words (plus VALIDATING).
_STATES = lane_states(queued=("INITIALIZING", "VALIDATING", "QUEUED"), running=("RUNNING",),
                      done=("DONE",), failed=("ERROR",), cancelled=("CANCELLED",))


def job_state(status: Any) -> str:
    """The lane state for a runtime job status (string or ``JobStatus`` enum)."""
    return lane_state(_STATES, status, "IBM job status")


def local_job_state(job: Any) -> str | None:
    """The state of a local-mode job from its future; None for a job without one (a service's).

    qiskit's ``PrimitiveJob.status()`` (qiskit 2.x) calls a future its thread has not yet picked up
    ERROR and caches that, so on a loaded machine a local job failed though its result arrived. The
    future itself says pending, running, cancelled, done or raised.
    """
    future = getattr(job, "_future", None)
    if not isinstance(future, Future):
        return None
    if future.cancelled():
        return "cancelled"
    if not future.done():
        return "running" if future.running() else "queued"
    return "failed" if future.exception() is not None else "done"


def _cancel_job(job: Any) -> None:
    from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

    try:
        job.cancel()
    except RuntimeInvalidStateError:  # finished between poll and cancel
        pass


class IbmQuantumQpu(QiskitBackendQpu):
    """One IBM Quantum device (or, with ``backend=``, a fake device in local testing mode).

    Exactly one of ``service`` (real device ``backend_name`` looked up on first use) or ``backend``
    (a backend instance, e.g. ``FakeManilaV2()``, run locally) is given. Job handles are runtime job ids.
    """

    provider_label = "IBM"

    def __init__(self, backend_name: str | None = None, *, service: Any = None, backend: Any = None,
                 max_depth: int = 2000, price: Price | None = None,
                 redact: tuple[str, ...] = ()) -> None:
        if (service is None) == (backend is None):
            raise ValueError("give exactly one of service= or backend=")
        if backend is None and not backend_name:
            raise ValueError("backend_name is required with service=")
        super().__init__(max_depth=max_depth, redact=redact)
        self.backend_name = backend_name or backend.name
        self.price = price or IBM_PRICE
        self._service = service
        self._given_backend = backend

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
                           f"{redact_secrets(str(exc), (token,))}") from None
        return cls(backend_name, service=service, redact=(token,), **options)

    def describe(self) -> dict[str, Any]:
        return {"backend_name": self.backend_name, "mode": "local" if self.local else "service"}

    @property
    def local(self) -> bool:
        """True in local testing mode (a fake backend run on this machine)."""
        return self._service is None

    @cached_property
    def backend(self) -> Any:
        if self._given_backend is not None:
            return self._given_backend
        with self.provider_errors(f"backend {self.backend_name} unavailable"):  # unknown, auth, network
            return self._service.backend(self.backend_name)

    def _run(self, circuit: Any, shots: int, seed: int | None) -> Any:
        """Submit one pub to the Sampler primitive; returns the runtime job."""
        from qiskit_ibm_runtime.executor_sampler import Sampler

        sampler = Sampler(mode=self.backend)
        if self.local:
            # Only the local simulator samples from a seed; a device's shots are physical.
            sampler.options.simulator.seed_simulator = simulator_seed(seed)
        return sampler.run([circuit], shots=shots)

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        with self.provider_errors(f"submission to {self.backend_name} failed"):
            job = self._run(circuit, shots, seed)
            handle = str(job.job_id())
        return self._remember(handle, job)

    def _job(self, handle: str) -> Any:
        """The runtime job: one this adapter submitted or, on a service, any job of the account."""
        job = self.jobs.get(handle)
        if job is not None:
            return job
        if self.local:
            return self._known(handle)  # unknown job
        with self.provider_errors(f"job {handle!r} not found on {self.backend_name}"):
            return self._service.job(handle)

    def poll(self, handle: str) -> str:
        job = self._job(handle)
        local = local_job_state(job) if self.local else None
        if local is not None:
            return local
        with self.provider_errors(f"status of job {handle} failed"):
            status = job.status()
        return job_state(status)

    def result(self, handle: str) -> dict[str, int]:
        job = self._job(handle)
        state = self.poll(handle)
        if state in ("queued", "running", "cancelled"):
            raise self._not_done(handle, state)
        # RuntimeJobFailureError, RuntimeJobTimeoutError, local errors...
        with self.provider_errors(f"job {handle} on {self.backend_name} failed"):
            pub = job.result()[0]
        if state == "failed":
            raise QpuError(f"IBM job {handle} on {self.backend_name} failed")
        if not list(pub.data.keys()):
            raise QpuError(f"job {handle} measured no classical bits")
        # join_data concatenates the registers with the first register in the lowest bits, which is
        # qiskit's count-key order once the spaces between registers are removed.
        return normalise_counts(pub.join_data().get_counts())

    def cancel(self, handle: str) -> None:
        self._cancel_unfinished(handle, partial(_cancel_job, self._job(handle)))

    def queue_info(self) -> ProviderQueue | None:
        """``BackendV2.status().pending_jobs`` (IBM's queue length for the device); local mode has none."""
        status = getattr(self.backend, "status", None)
        if status is None:
            return None
        with self.provider_errors(f"status of {self.backend_name} unavailable"):
            pending = getattr(status(), "pending_jobs", None)
        if not isinstance(pending, int):
            return None
        return ProviderQueue(source=f"IBM {self.backend_name}: pending_jobs", pending_jobs=pending)

    def run_provenance(self) -> dict[str, Any]:
        """How reproducible this adapter's counts are: seeded in local mode, physical on a device."""
        if self.local:
            return {"mode": "local", "seeded": True, "reproducible": True,
                    "note": "local testing mode: Aer with the fake device's noise model, "
                            "seed_simulator derived from the job seed"}
        return {"mode": "device", "seeded": False, "reproducible": False,
                "note": "shots on quantum hardware are not reproducible from a seed"}
