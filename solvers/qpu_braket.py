"""Amazon Braket devices through the Braket SDK.

`BraketQpu` runs qiskit circuits on a Braket device: ``LocalSimulator()`` (offline, noiseless) or an
``AwsDevice(arn)``. Circuits are transpiled in qiskit against the device's target from
qiskit-braket-provider and converted with its ``to_braket``.

AWS credentials are never handled here: ``AwsDevice`` uses boto3's standard credential chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, the shared
credentials file, instance/container roles) and ``AWS_REGION``/``AWS_DEFAULT_REGION``. Error messages
are built from exception types and texts with any credential values from the environment redacted (by
the `QpuAdapter` base, from `BraketQpu.secret_env_vars`).

Bit order: ``to_braket`` emits one Braket measurement per measured classical bit, in ascending
classical-bit order, so character i of a Braket count key is the i-th measured classical bit. Qiskit
keys list classical bits from the highest index to the lowest, with unmeasured bits reading 0; `result`
rebuilds that order from the circuit's own measurements rather than just reversing the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from solvers.capability import package_version
from solvers.qpu_base import (
    Price,
    ProviderQueue,
    QpuAdapter,
    QpuError,
    env_secrets,
    lane_state,
    lane_states,
    redact_secrets,
)

# Braket publishes per-task and per-shot prices per device, but they change and vary by region; a
# deployment configures them (``price=``) instead of this placeholder.
BRAKET_PRICE = Price(0.0, 0.0, "configure per contract")
LOCAL_PRICE = Price(0.0, 0.0, "local simulator: no charge")

_STATES = lane_states(queued=("CREATED", "QUEUED"), running=("RUNNING",), done=("COMPLETED",),
                      failed=("FAILED",), cancelled=("CANCELLING", "CANCELLED"))

_AWS_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def task_state(state: str) -> str:
    """The lane state for a Braket quantum-task state."""
    return lane_state(_STATES, state, "Braket task state")


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

    provider_label = "Braket"
    secret_env_vars = _AWS_SECRETS

    def __init__(self, device: Any = None, *, max_depth: int = 2000, price: Price | None = None,
                 redact: tuple[str, ...] = ()) -> None:
        if device is None:
            from braket.devices import LocalSimulator

            device = LocalSimulator()
        super().__init__(max_depth=max_depth, redact=redact)
        self.device = device
        self.price = price or (BRAKET_PRICE if self.remote else LOCAL_PRICE)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> BraketQpu:
        """An adapter for the device ``QGATE_BRAKET_DEVICE_ARN`` (AWS credentials: boto3's chain)."""
        env = os.environ if env is None else env
        arn = env.get("QGATE_BRAKET_DEVICE_ARN", "").strip()
        if not arn:
            raise ValueError("set QGATE_BRAKET_DEVICE_ARN")
        from braket.aws import AwsDevice

        secrets = env_secrets(cls.secret_env_vars, env, os.environ)
        try:
            device = AwsDevice(arn)
        except Exception as exc:  # boto3/botocore: credentials, region, unknown ARN
            raise QpuError(f"Braket device {arn} unavailable: {type(exc).__name__}: "
                           f"{redact_secrets(str(exc), secrets)}") from None
        return cls(device, redact=env_secrets(cls.secret_env_vars, env), **options)

    def describe(self) -> dict[str, Any]:
        return {"device": self.name}

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

    def transpile_target(self) -> dict[str, Any]:
        return {"target": self.target}

    def _convert(self, circuit: Any) -> Any:
        from qiskit_braket_provider.providers.adapter import to_braket

        if self.remote:
            return to_braket(circuit, braket_device=self.device)
        return to_braket(circuit)

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        # the converter raises ValueError/NotImplementedError/QiskitError
        with self.provider_errors(f"cannot convert the circuit for {self.name}"):
            program = self._convert(circuit)
        # simulator errors, botocore ClientError, missing credentials
        with self.provider_errors(f"submission to {self.name} failed"):
            task = self.device.run(program, shots=shots)
            handle = str(task.id)
        return self._remember(handle, (task, measured_clbits(circuit), circuit.num_clbits))

    def poll(self, handle: str) -> str:
        task, _, _ = self._known(handle)
        with self.provider_errors(f"status of task {handle} failed"):
            return task_state(task.state())

    def result(self, handle: str) -> dict[str, int]:
        task, clbits, num_clbits = self._known(handle)
        state = self.poll(handle)
        if state == "failed":
            raise QpuError(f"Braket task {handle} on {self.name} failed{self._failure_reason(task)}")
        if state != "done":
            raise self._not_done(handle, state)
        with self.provider_errors(f"result of task {handle} failed"):
            outcome = task.result()
        if outcome is None:
            raise QpuError(f"Braket task {handle} on {self.name} returned no result")
        return qiskit_counts(outcome.measurement_counts, clbits, num_clbits)

    def _failure_reason(self, task: Any) -> str:
        """``: <reason>`` from the task's metadata (redacted), or nothing when it cannot be had."""
        metadata = getattr(task, "metadata", None)
        if not callable(metadata):
            return ""
        try:
            return f": {self.redact(str(metadata(True).get('failureReason', '')))}"
        except Exception:  # the reason is a courtesy; the failure itself is what matters
            return ""

    def cancel(self, handle: str) -> None:
        task, _, _ = self._known(handle)
        self._cancel_unfinished(handle, task.cancel, "task")

    def queue_info(self) -> ProviderQueue | None:
        """``AwsDevice.queue_depth().quantum_tasks``: the device's normal-priority task queue (hybrid jobs'
        priority tasks jump it, so they are not counted as ahead of ours). Local simulators have none."""
        queue_depth = getattr(self.device, "queue_depth", None)
        if queue_depth is None:
            return None
        with self.provider_errors(f"queue depth of {self.name} unavailable"):
            tasks = getattr(queue_depth(), "quantum_tasks", None) or {}
        normal = next((value for key, value in tasks.items() if str(getattr(key, "value", key)).lower() == "normal"),
                      None)
        try:
            pending = int(str(normal).lstrip(">"))
        except ValueError:
            return None
        return ProviderQueue(source=f"Braket {self.name}: queue_depth", pending_jobs=pending)

    def device_limits(self) -> tuple[int | None, int | None]:
        properties = self.device.properties
        qubits = getattr(getattr(properties, "paradigm", None), "qubitCount", None)
        shots_range = getattr(getattr(properties, "service", None), "shotsRange", None)
        return qubits, (shots_range[1] if shots_range else None)

    def calibration(self) -> dict[str, Any]:
        """The device's identity and properties digest: Braket publishes no per-qubit calibration here."""
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
