"""Amazon Braket devices through the Braket SDK.

`BraketQpu` runs qiskit circuits on a Braket device: ``LocalSimulator()`` (offline, noiseless) or an
``AwsDevice(arn)``. Circuits are transpiled in qiskit against the device's target from
qiskit-braket-provider and converted with its ``to_braket``.

AWS credentials are never handled here: ``AwsDevice`` uses boto3's standard credential chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, the shared
credentials file, instance/container roles) and ``AWS_REGION``/``AWS_DEFAULT_REGION``. Error messages
are built from exception types and texts with any credential values from the environment redacted.

Bit order: ``to_braket`` emits one Braket measurement per measured classical bit, in ascending
classical-bit order, so character i of a Braket count key is the i-th measured classical bit. Qiskit
keys list classical bits from the highest index to the lowest, with unmeasured bits reading 0; `result`
rebuilds that order from the circuit's own measurements rather than just reversing the key.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from solvers.aer import simulator_seed
from solvers.base import LaneLimits
from solvers.capability import package_version
from solvers.problems import MAX_SHOTS, canonical_json
from solvers.qpu import Price, QpuAdapter, QpuError

# Braket publishes per-task and per-shot prices per device, but they change and vary by region; a
# deployment configures them (``price=``) instead of this placeholder.
BRAKET_PRICE = Price(0.0, 0.0, "configure per contract")
LOCAL_PRICE = Price(0.0, 0.0, "local simulator: no charge")

_STATES = {
    "CREATED": "queued",
    "QUEUED": "queued",
    "RUNNING": "running",
    "COMPLETED": "done",
    "FAILED": "failed",
    "CANCELLING": "cancelled",
    "CANCELLED": "cancelled",
}

_AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def task_state(state: str) -> str:
    """The lane state for a Braket quantum-task state."""
    try:
        return _STATES[str(state).upper()]
    except KeyError:
        raise QpuError(f"unrecognised Braket task state {state!r}") from None


def _redacted(text: str) -> str:
    for variable in _AWS_SECRETS:
        secret = os.environ.get(variable)
        if secret:
            text = text.replace(secret, "***")
    return text


def measured_clbits(circuit: Any) -> list[int]:
    """Indices of the classical bits written by a measurement, ascending (the Braket key order)."""
    bits = {circuit.find_bit(clbit).index
            for instruction in circuit.data if instruction.operation.name == "measure"
            for clbit in instruction.clbits}
    return sorted(bits)


def qiskit_counts(braket_counts: Mapping[str, int], clbits: list[int], num_clbits: int) -> dict[str, int]:
    """Braket counts (character i = classical bit ``clbits[i]``) keyed the qiskit way."""
    counts: dict[str, int] = {}
    for key, value in braket_counts.items():
        if len(key) != len(clbits):
            raise QpuError(f"Braket returned {len(key)} measured bits, expected {len(clbits)}")
        bits = ["0"] * num_clbits
        for char, clbit in zip(key, clbits):
            bits[clbit] = char
        qiskit_key = "".join(reversed(bits))
        counts[qiskit_key] = counts.get(qiskit_key, 0) + int(value)
    return dict(sorted(counts.items()))


class BraketQpu(QpuAdapter):
    """One Braket device. ``device`` defaults to the local state-vector simulator.

    Braket's local simulator takes no seed, so runs are neither seeded nor reproducible; this is recorded
    in `run_provenance` (and in every calibration snapshot) rather than pretending otherwise.
    """

    max_jobs_kept = 256

    def __init__(self, device: Any = None, *, max_depth: int = 2000, price: Price | None = None) -> None:
        if device is None:
            from braket.devices import LocalSimulator

            device = LocalSimulator()
        self.device = device
        self.max_depth = max_depth
        self.price = price or (BRAKET_PRICE if self.remote else LOCAL_PRICE)
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, tuple[Any, list[int], int]] = OrderedDict()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> BraketQpu:
        """An adapter for the device ``QGATE_BRAKET_DEVICE_ARN`` (AWS credentials: boto3's chain)."""
        env = os.environ if env is None else env
        arn = env.get("QGATE_BRAKET_DEVICE_ARN", "").strip()
        if not arn:
            raise ValueError("set QGATE_BRAKET_DEVICE_ARN")
        from braket.aws import AwsDevice

        try:
            device = AwsDevice(arn)
        except Exception as exc:  # boto3/botocore: credentials, region, unknown ARN
            raise QpuError(f"Braket device {arn} unavailable: {type(exc).__name__}: "
                           f"{_redacted(str(exc))}") from None
        return cls(device, **options)

    def __repr__(self) -> str:
        return f"BraketQpu(device={self.name!r})"

    @property
    def remote(self) -> bool:
        """True for an AWS device (anything with an ARN), False for a local simulator."""
        return hasattr(self.device, "arn")

    @property
    def name(self) -> str:
        return str(self.device.name)

    @property
    def version(self) -> str:
        return (f"amazon-braket-sdk {package_version('amazon-braket-sdk')}, "
                f"qiskit-braket-provider {package_version('qiskit-braket-provider')}")

    @cached_property
    def target(self) -> Any:
        from qiskit_braket_provider.providers.target import aws_device_to_target, local_simulator_to_target

        if self.remote:
            return aws_device_to_target(self.device)
        return local_simulator_to_target(self.device)

    def _error(self, what: str, exc: BaseException) -> QpuError:
        return QpuError(f"Braket {what}: {type(exc).__name__}: {_redacted(str(exc))}")

    def transpile(self, circuit: Any, seed: int | None) -> Any:
        from qiskit.transpiler import generate_preset_pass_manager

        manager = generate_preset_pass_manager(optimization_level=1, target=self.target,
                                               seed_transpiler=simulator_seed(seed))
        return manager.run(circuit)

    def _convert(self, circuit: Any) -> Any:
        from qiskit_braket_provider.providers.adapter import to_braket

        if self.remote:
            return to_braket(circuit, braket_device=self.device)
        return to_braket(circuit)

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        try:
            program = self._convert(circuit)
        except Exception as exc:  # the converter raises ValueError/NotImplementedError/QiskitError
            raise self._error(f"cannot convert the circuit for {self.name}", exc) from None
        try:
            task = self.device.run(program, shots=shots)
            handle = str(task.id)
        except Exception as exc:  # simulator errors, botocore ClientError, missing credentials
            raise self._error(f"submission to {self.name} failed", exc) from None
        with self._lock:
            self._tasks[handle] = (task, measured_clbits(circuit), circuit.num_clbits)
            while len(self._tasks) > self.max_jobs_kept:
                self._tasks.popitem(last=False)
        return handle

    def _task(self, handle: str) -> tuple[Any, list[int], int]:
        with self._lock:
            entry = self._tasks.get(handle)
        if entry is None:
            raise QpuError(f"unknown job {handle!r} on {self.name}")
        return entry

    def poll(self, handle: str) -> str:
        task, _, _ = self._task(handle)
        try:
            return task_state(task.state())
        except QpuError:
            raise
        except Exception as exc:
            raise self._error(f"status of task {handle} failed", exc) from None

    def result(self, handle: str) -> dict[str, int]:
        task, clbits, num_clbits = self._task(handle)
        state = self.poll(handle)
        if state == "failed":
            reason = ""
            metadata = getattr(task, "metadata", None)
            if callable(metadata):
                try:
                    reason = f": {_redacted(str(metadata(True).get('failureReason', '')))}"
                except Exception:  # the reason is a courtesy; the failure itself is what matters
                    reason = ""
            raise QpuError(f"Braket task {handle} on {self.name} failed{reason}")
        if state != "done":
            raise QpuError(f"job {handle} is {state}, not done")
        try:
            outcome = task.result()
        except Exception as exc:
            raise self._error(f"result of task {handle} failed", exc) from None
        if outcome is None:
            raise QpuError(f"Braket task {handle} on {self.name} returned no result")
        return qiskit_counts(outcome.measurement_counts, clbits, num_clbits)

    def cancel(self, handle: str) -> None:
        task, _, _ = self._task(handle)
        if self.poll(handle) in ("done", "failed", "cancelled"):
            return
        try:
            task.cancel()
        except Exception as exc:
            raise self._error(f"cancel of task {handle} failed", exc) from None

    def limits(self) -> LaneLimits:
        properties = self.device.properties
        qubits = getattr(getattr(properties, "paradigm", None), "qubitCount", None)
        shots_range = getattr(getattr(properties, "service", None), "shotsRange", None)
        max_shots = min(int(shots_range[1]), MAX_SHOTS) if shots_range else MAX_SHOTS
        return LaneLimits(max_qubits=qubits, max_depth=self.max_depth, max_shots=max_shots)

    def calibration_snapshot(self) -> dict[str, Any]:
        snapshot = self._device_summary()
        snapshot["provenance"] = self.run_provenance()
        snapshot["sha256"] = hashlib.sha256(canonical_json(snapshot)).hexdigest()
        return snapshot

    def _device_summary(self) -> dict[str, Any]:
        properties = self.device.properties
        if not self.remote:
            return {"backend": self.name, "kind": "noiseless local simulator",
                    "num_qubits": properties.paradigm.qubitCount,
                    "braket_sdk": package_version("amazon-braket-sdk")}
        # Full device properties can be large; store their digest plus the fields that identify them.
        service = getattr(properties, "service", None)
        updated = getattr(service, "updatedAt", None)
        return {
            "backend": self.name,
            "arn": self.device.arn,
            "provider": getattr(self.device, "provider_name", None),
            "kind": "aws device",
            "status": getattr(self.device, "status", None),
            "num_qubits": getattr(getattr(properties, "paradigm", None), "qubitCount", None),
            "properties_updated_at": updated.isoformat() if updated is not None else None,
            "properties_sha256": hashlib.sha256(properties.json().encode()).hexdigest(),
        }

    def run_provenance(self) -> dict[str, Any]:
        """Braket runs take no seed: neither the local simulator nor a device reproduce shots."""
        if self.remote:
            return {"mode": "device", "seeded": False, "reproducible": False,
                    "note": "shots on an AWS Braket device are not reproducible from a seed"}
        return {"mode": "local", "seeded": False, "reproducible": False,
                "note": "Braket LocalSimulator accepts no seed; repeated runs sample differently"}
