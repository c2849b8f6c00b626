"""What the QPU adapters share (the `QpuAdapter` base), the one provider switch, and the import rules of solvers/.

The base holds transpiling to the device target, the bounded job table, credential redaction and the
sha256-stamped calibration snapshot; each adapter keeps only its own part. The import walk keeps
solvers/ free of import cycles and of the gateway's edges (settings, workers, api, Flask, Celery).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from solvers.base import LaneLimits
from solvers.circuits import BELL, parse_qasm
from solvers.problems import MAX_SHOTS, canonical_json
from solvers.qpu_base import (
    JOB_STATES,
    TERMINAL_STATES,
    JobTable,
    QiskitBackendQpu,
    QpuAdapter,
    QpuError,
    env_secrets,
    lane_state,
    lane_states,
    redact_secrets,
    stamp_sha256,
)

SOLVERS = Path(__file__).resolve().parents[2] / "solvers"
SECRET = "aws-SECRET-8c1e55"

# ---------------------------------------------------------------- the base, on a minimal adapter


class _Adapter(QpuAdapter):
    """Only the provider's own part, in memory: jobs finish when submitted."""

    provider_label = "Test"
    secret_env_vars = ("QGATE_TEST_SECRET",)

    def __init__(self, backend: Any = None, **options: Any) -> None:
        super().__init__(**options)
        self.backend = backend
        self.cancelled: list[str] = []

    @classmethod
    def configured(cls, *, backend_name: str, queue_delay_s: float, failure_rate: float,
                   env: Any) -> _Adapter:
        return cls()

    @property
    def name(self) -> str:
        return "test_device"

    def transpile_target(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        return self._remember(f"t-{len(self.jobs) + 1}-{seed}", {"state": "done", "shots": shots})

    def poll(self, handle: str) -> str:
        return self._known(handle)["state"]

    def result(self, handle: str) -> dict[str, int]:
        return {"0": self._known(handle)["shots"]}

    def cancel(self, handle: str) -> None:
        self._cancel_unfinished(handle, lambda: self.cancelled.append(handle))

    def device_limits(self) -> tuple[int | None, int | None]:
        return 5, 10**9

    def calibration(self) -> dict[str, Any]:
        return {"backend": self.name, "num_qubits": 5}


def test_job_table_is_bounded_oldest_first() -> None:
    table = JobTable(3)
    for i in range(5):
        table.add(f"j{i}", i)
    assert len(table) == 3 and table.get("j0") is None and table.get("j1") is None
    assert [table.get(f"j{i}") for i in (2, 3, 4)] == [2, 3, 4] and "j4" in table
    with pytest.raises(ValueError):
        JobTable(0)


def test_adapter_job_table_keeps_max_jobs_kept() -> None:
    class Small(_Adapter):
        max_jobs_kept = 2

    adapter = Small()
    handles = [adapter.submit(None, 10, seed) for seed in range(3)]
    assert len(adapter.jobs) == 2
    with pytest.raises(QpuError, match=r"unknown job 't-1-0' on test_device"):
        adapter.poll(handles[0])
    assert adapter.poll(handles[2]) == "done"


@pytest.mark.parametrize("adapter_class", ["emulated", "ibm", "braket", "http"])
def test_every_adapter_keeps_the_bound(adapter_class: str) -> None:
    from solvers.qpu_factory import adapter_class as resolve

    assert resolve(adapter_class).max_jobs_kept == QpuAdapter.max_jobs_kept == 256


def test_redaction_of_errors_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_secrets(f"a {SECRET} b {SECRET}", ("", None, SECRET)) == "a *** b ***"
    monkeypatch.setenv("QGATE_TEST_SECRET", SECRET)
    assert env_secrets(("QGATE_TEST_SECRET", "QGATE_UNSET")) == (SECRET,)
    assert env_secrets(("K",), {"K": "x"}, {"K": ""}, {"K": "y"}) == ("x", "y")

    adapter = _Adapter(redact=("tok-123", ""))
    assert adapter.secrets() == ("tok-123", SECRET)
    with pytest.raises(QpuError) as caught:
        with adapter.provider_errors("status of job x failed"):
            raise RuntimeError(f"denied for tok-123 and {SECRET}")
    assert str(caught.value) == "Test status of job x failed: RuntimeError: denied for *** and ***"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    original = QpuError("already a provider error")
    with pytest.raises(QpuError) as caught:
        with adapter.provider_errors("anything"):
            raise original
    assert caught.value is original

    class Leaky(_Adapter):
        def describe(self) -> dict[str, Any]:
            return {"name": self.name, "token": "tok-123"}

    assert repr(_Adapter()) == "_Adapter(name='test_device')"
    assert repr(Leaky(redact=("tok-123",))) == "Leaky(name='test_device', token='***')"


def test_cancel_only_unfinished_jobs() -> None:
    adapter = _Adapter()
    handle = adapter.submit(None, 1, 1)
    adapter.cancel(handle)
    assert adapter.cancelled == []
    adapter._known(handle)["state"] = "queued"
    adapter.cancel(handle)
    assert adapter.cancelled == [handle]
    assert TERMINAL_STATES == {"done", "failed", "cancelled"}


def test_limits_and_snapshot_from_the_base() -> None:
    adapter = _Adapter(max_depth=7)
    assert adapter.limits() == LaneLimits(max_qubits=5, max_depth=7, max_shots=MAX_SHOTS)
    snapshot = adapter.calibration_snapshot()
    assert snapshot == stamp_sha256({"backend": "test_device", "num_qubits": 5})
    assert "provenance" not in snapshot

    class WithProvenance(_Adapter):
        def run_provenance(self) -> dict[str, Any]:
            return {"mode": "test", "seeded": True}

    snapshot = WithProvenance().calibration_snapshot()
    assert snapshot["provenance"] == {"mode": "test", "seeded": True}
    unstamped = {key: value for key, value in snapshot.items() if key != "sha256"}
    assert snapshot["sha256"] == hashlib.sha256(canonical_json(unstamped)).hexdigest()


def test_transpile_to_the_device_target_is_seeded() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    adapter = _Adapter(FakeManilaV2())
    circuit = parse_qasm(BELL)
    first = adapter.transpile(circuit.copy(), 5)
    assert first == adapter.transpile(circuit.copy(), 5)
    assert set(first.count_ops()) <= set(adapter.backend.target.operation_names) | {"barrier"}


# ---------------------------------------------------------------- the three adapters


COMMON = ("transpile", "limits", "cost_estimate", "provider_errors", "_error", "_remember", "_known",
          "_not_done", "_cancel_unfinished", "__repr__", "redact", "secrets", "max_jobs_kept")
QISKIT_COMMON = ("name", "version", "transpile_target", "device_limits", "calibration")


@pytest.mark.parametrize("provider", ["emulated", "ibm", "braket", "http"])
def test_adapters_keep_only_their_own(provider: str) -> None:
    from solvers.qpu_factory import adapter_class

    cls = adapter_class(provider)
    assert issubclass(cls, QpuAdapter) and not getattr(cls, "__abstractmethods__", None)
    assert [name for name in COMMON if name in vars(cls)] == []
    assert "_jobs" not in vars(cls) and "_tasks" not in vars(cls)
    if provider in ("emulated", "ibm"):  # both drive a qiskit backend: that part is shared too
        assert issubclass(cls, QiskitBackendQpu)
        assert [name for name in QISKIT_COMMON if name in vars(cls)] == []


def test_state_tables() -> None:
    states = lane_states(queued=("created", "QUEUED"), running=("RUNNING",), done=("DONE",),
                         failed=("FAILED",), cancelled=())
    assert states == {"CREATED": "queued", "QUEUED": "queued", "RUNNING": "running", "DONE": "done",
                      "FAILED": "failed"}
    assert set(states.values()) <= set(JOB_STATES)
    with pytest.raises(ValueError, match="lane_states needs exactly"):
        lane_states(queued=("Q",), running=(), done=(), failed=())

    class Status:
        name = "running"

    assert lane_state(states, "created", "Test state") == "queued"
    assert lane_state(states, Status(), "Test state") == "running"
    with pytest.raises(QpuError, match="unrecognised Test state 'LOST'"):
        lane_state(states, "lost", "Test state")


def test_configured_defaults_to_from_env() -> None:
    with pytest.raises(NotImplementedError, match="_Adapter is not configured from the environment"):
        _Adapter.from_env({})

    class FromEnv(_Adapter):
        configured = vars(QpuAdapter)["configured"]  # the base default, not _Adapter's

        @classmethod
        def from_env(cls, env: Any = None, **options: Any) -> Any:
            return ("from_env", env)

    assert FromEnv.configured(backend_name="b", queue_delay_s=1.0, failure_rate=0.0, env={"A": "1"}) \
        == ("from_env", {"A": "1"})


def _snapshot_is_stamped(snapshot: dict[str, Any]) -> bool:
    unstamped = {key: value for key, value in snapshot.items() if key != "sha256"}
    return snapshot["sha256"] == hashlib.sha256(canonical_json(unstamped)).hexdigest()


def test_every_adapter_snapshot_is_stamped() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from solvers.qpu import EmulatedQpu
    from solvers.qpu_braket import BraketQpu
    from solvers.qpu_ibm import IbmQuantumQpu

    emulated = EmulatedQpu("fake_manila")
    ibm = IbmQuantumQpu(backend=FakeManilaV2())
    for adapter in (emulated, ibm, BraketQpu()):
        assert _snapshot_is_stamped(adapter.calibration_snapshot())
    # The fake device never changes: its snapshot is built once, handed out as a copy.
    assert emulated.calibration_snapshot() == emulated.calibration_snapshot()
    assert emulated.calibration_snapshot() is not emulated.calibration_snapshot()
    assert "provenance" not in emulated.calibration_snapshot()
    without = {k: v for k, v in ibm.calibration_snapshot().items() if k not in ("provenance", "sha256")}
    assert without == {k: v for k, v in emulated.calibration_snapshot().items() if k != "sha256"}


def test_braket_redacts_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import braket.aws

    from solvers.qpu_braket import BraketQpu

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    class Refusing:
        def __init__(self, arn: str) -> None:
            raise ValueError(f"signature mismatch for {SECRET} and session tok-ENV-ONLY")

    monkeypatch.setattr(braket.aws, "AwsDevice", Refusing)
    env = {"QGATE_BRAKET_DEVICE_ARN": "arn:aws:braket:::device/qpu/x/y", "AWS_SESSION_TOKEN": "tok-ENV-ONLY"}
    with pytest.raises(QpuError) as caught:
        BraketQpu.from_env(env)
    assert str(caught.value) == ("Braket device arn:aws:braket:::device/qpu/x/y unavailable: ValueError: "
                                 "signature mismatch for *** and session ***")

    adapter = BraketQpu()
    with pytest.raises(QpuError) as caught:
        with adapter.provider_errors("submission to braket_sv failed"):
            raise RuntimeError(f"credentials {SECRET} rejected")
    assert str(caught.value) == "Braket submission to braket_sv failed: RuntimeError: credentials *** rejected"
    assert SECRET not in repr(adapter)


# ---------------------------------------------------------------- the one provider switch


def test_make_qpu_adapter_emulated() -> None:
    from solvers.qpu import EmulatedQpu
    from solvers.qpu_factory import make_qpu_adapter

    adapter = make_qpu_adapter("emulated", backend_name="fake_lima", queue_delay_s=0.25, failure_rate=0.5,
                               env={})
    assert isinstance(adapter, EmulatedQpu)
    assert (adapter.name, adapter.queue_delay_s, adapter.failure_rate) == ("fake_lima", 0.25, 0.5)


@pytest.mark.parametrize("provider,module,cls_name", [("ibm", "solvers.qpu_ibm", "IbmQuantumQpu"),
                                                      ("braket", "solvers.qpu_braket", "BraketQpu")])
def test_make_qpu_adapter_real_providers_read_env(monkeypatch: pytest.MonkeyPatch, provider: str,
                                                  module: str, cls_name: str) -> None:
    import importlib

    from solvers.qpu_factory import make_qpu_adapter

    cls = getattr(importlib.import_module(module), cls_name)
    seen: list[Any] = []
    monkeypatch.setattr(cls, "from_env", classmethod(lambda klass, env=None, **kw: seen.append(env) or "made"))
    env = {"QGATE_X": "1"}
    assert make_qpu_adapter(provider, backend_name="fake_manila", queue_delay_s=0.0, failure_rate=0.0,
                            env=env) == "made"
    assert seen == [env]


def test_make_qpu_adapter_errors() -> None:
    from solvers.qpu_factory import make_qpu_adapter

    options = {"backend_name": "fake_manila", "queue_delay_s": 0.0, "failure_rate": 0.0}
    with pytest.raises(ValueError, match="QGATE_IBM_TOKEN"):
        make_qpu_adapter("ibm", env={}, **options)
    with pytest.raises(ValueError, match="QGATE_BRAKET_DEVICE_ARN"):
        make_qpu_adapter("braket", env={}, **options)
    with pytest.raises(ValueError, match="unknown qpu provider 'ionq'; expected emulated, ibm, braket or http"):
        make_qpu_adapter("ionq", env={}, **options)
    with pytest.raises(ValueError, match="failure_rate"):
        make_qpu_adapter("emulated", env={}, **{**options, "failure_rate": 2.0})
