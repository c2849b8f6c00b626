"""IBM (local testing mode) and Braket (LocalSimulator) adapters, offline.

Happy paths run the real primitives: qiskit-ibm-runtime's client-side Sampler on a fake backend, and
Braket's LocalSimulator through qiskit-braket-provider's converter. Stub jobs appear only where a real
offline run cannot produce the behaviour: a job that fails on the provider, or one that stays queued.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from braket import devices as braket_devices

from solvers.circuits import BELL, GHZ3, parse_qasm
from solvers.problems import parse_problem
from solvers.qpu import EmulatedQpu, QpuCircuitSolver, QpuError
from solvers.qpu_factory import qpu_adapter




def _qasm(body: str, qubits: int = 3, clbits: int = 3) -> str:
    return (f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{clbits}];\n{body}')


# X on qubit 0 only: qiskit's key is "001"; a reversed bit order would report "100".
X_ON_0 = _qasm("x q[0];\nmeasure q -> c;\n")
# Qubit 0 measured into c[2], qubit 1 into c[0], qubit 2 into c[1]: the 1 lands in the top bit.
X_PERMUTED = _qasm("x q[0];\nmeasure q[0] -> c[2];\nmeasure q[1] -> c[0];\nmeasure q[2] -> c[1];\n")
# Only c[1] is written (from qubit 0, flipped); c[0] and c[2] stay 0.
X_PARTIAL = _qasm("x q[0];\nmeasure q[0] -> c[1];\n")

TOKEN = "tok-SECRET-4f9a1c"


def _run(adapter: Any, qasm: str, shots: int, seed: int | None = 7, timeout_s: float = 30) -> dict[str, int]:
    circuit = adapter.transpile(parse_qasm(qasm).copy(), seed)
    handle = adapter.submit(circuit, shots, seed)
    deadline = time.monotonic() + timeout_s
    while adapter.poll(handle) not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.01)
    return adapter.result(handle)


def _dominant(counts: dict[str, int]) -> str:
    return max(counts, key=counts.__getitem__)


# ---------------------------------------------------------------- IBM, local testing mode


@pytest.fixture(scope="module")
def ibm():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from solvers.qpu_ibm import IbmQuantumQpu

    return IbmQuantumQpu(backend=FakeManilaV2())


def test_ibm_bell_counts_plausible(ibm):
    counts = _run(ibm, BELL, 1000)
    assert sum(counts.values()) == 1000
    assert set(counts) <= {"00", "01", "10", "11"}
    assert counts.get("00", 0) + counts.get("11", 0) > 800
    assert min(counts.get("00", 0), counts.get("11", 0)) > 300


def test_ibm_bit_order(ibm):
    assert _dominant(_run(ibm, X_ON_0, 400)) == "001"
    assert _dominant(_run(ibm, X_PERMUTED, 400)) == "100"


def test_ibm_local_mode_is_seeded(ibm):
    assert _run(ibm, BELL, 500, seed=11) == _run(ibm, BELL, 500, seed=11)
    assert _run(ibm, BELL, 500, seed=11) != _run(ibm, BELL, 500, seed=12)


def test_ibm_ghz3_through_solver(ibm):
    solver = QpuCircuitSolver(ibm)
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 1000})
    solution = solver.solve(problem, time_limit_s=30, seed=3)
    counts = solution.result["counts"]
    assert sum(counts.values()) == 1000
    assert counts.get("000", 0) + counts.get("111", 0) > 750
    assert solution.details["backend"] == "fake_manila"
    assert solution.calibration["sha256"] and solution.calibration["num_qubits"] == 5
    assert solution.calibration["provenance"]["seeded"] is True
    assert solver.solve(problem, time_limit_s=30, seed=3).result == solution.result


def test_ibm_cancel_after_done_is_noop(ibm):
    circuit = ibm.transpile(parse_qasm(BELL).copy(), 1)
    handle = ibm.submit(circuit, 50, 1)
    while ibm.poll(handle) != "done":
        time.sleep(0.01)
    ibm.cancel(handle)
    assert ibm.poll(handle) == "done"
    with pytest.raises(QpuError, match="unknown job"):
        ibm.poll("no-such-job")


def test_ibm_job_state_mapping():
    from qiskit.providers import JobStatus

    from solvers.qpu_ibm import job_state

    assert [job_state(s) for s in ("INITIALIZING", "QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED")] \
        == ["queued", "queued", "running", "done", "failed", "cancelled"]
    assert job_state(JobStatus.VALIDATING) == "queued"
    assert job_state(JobStatus.DONE) == "done"
    assert job_state(JobStatus.ERROR) == "failed"
    with pytest.raises(QpuError, match="unrecognised"):
        job_state("LOST")


class _StubRuntimeJob:
    """A runtime job in a fixed state: for failures and queues local mode cannot produce."""

    def __init__(self, status: str, error: Exception | None = None, cancel_error: Exception | None = None):
        self._status, self.error, self.cancel_error, self.cancelled = status, error, cancel_error, 0

    def job_id(self) -> str:
        return "stub-job-1"

    def status(self) -> str:
        return self._status

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        raise AssertionError("stub has no result")

    def cancel(self) -> None:
        self.cancelled += 1
        if self.cancel_error is not None:
            raise self.cancel_error
        self._status = "CANCELLED"


def _ibm_with_job(job: _StubRuntimeJob, **options: Any):
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from solvers.qpu_ibm import IbmQuantumQpu

    class StubbedIbm(IbmQuantumQpu):
        def _run(self, circuit: Any, shots: int, seed: int | None) -> Any:
            return job

    return StubbedIbm(backend=FakeManilaV2(), **options)


def test_ibm_failed_job_maps_to_qpu_error_without_token():
    from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError

    job = _StubRuntimeJob("ERROR", RuntimeJobFailureError(f"job failed: bad header {TOKEN}"))
    adapter = _ibm_with_job(job, redact=(TOKEN,))
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    with pytest.raises(QpuError, match="RuntimeJobFailureError") as caught:
        QpuCircuitSolver(adapter).solve(problem, time_limit_s=10, seed=1)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_ibm_timeout_cancels_job():
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    job = _StubRuntimeJob("QUEUED")
    adapter = _ibm_with_job(job)
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    with pytest.raises(TimeoutError, match="cancelled"):
        QpuCircuitSolver(adapter).solve(problem, time_limit_s=0.1, seed=1)
    assert job.cancelled == 1
    assert adapter.poll("stub-job-1") == "cancelled"
    with pytest.raises(QpuError, match="not done"):
        adapter.result("stub-job-1")

    refusing = _StubRuntimeJob("RUNNING", cancel_error=IBMRuntimeError("service says no"))
    adapter = _ibm_with_job(refusing)
    handle = adapter.submit(None, 10, None)
    with pytest.raises(QpuError, match="cancel of job stub-job-1 failed: IBMRuntimeError"):
        adapter.cancel(handle)


class _FakeService:
    """Stands in for QiskitRuntimeService (which authenticates over the network when built)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def backend(self, name: str) -> Any:
        from qiskit_ibm_runtime.fake_provider import FakeManilaV2

        return FakeManilaV2()


def test_ibm_from_env_keeps_token_private(tmp_path, caplog):
    from qiskit_ibm_runtime.accounts.management import _DEFAULT_CHANNEL_TYPE

    from solvers.qpu_ibm import DEFAULT_CHANNEL, IbmQuantumQpu

    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    made: list[_FakeService] = []

    def factory(**kwargs: Any) -> _FakeService:
        made.append(_FakeService(**kwargs))
        return made[-1]

    adapter = IbmQuantumQpu.from_env({"QGATE_IBM_TOKEN_FILE": str(token_file), "QGATE_IBM_INSTANCE": "crn:x",
                                      "QGATE_IBM_BACKEND": "ibm_test"}, service_factory=factory)
    assert made[0].kwargs == {"channel": DEFAULT_CHANNEL, "token": TOKEN, "instance": "crn:x"}
    assert DEFAULT_CHANNEL == _DEFAULT_CHANNEL_TYPE
    assert adapter.name == "ibm_test" and not adapter.local
    exposed = [repr(adapter), str(adapter), repr(adapter.calibration_snapshot()), repr(adapter.limits()),
               repr(adapter.cost_estimate(100)), caplog.text]
    assert not any(TOKEN in text for text in exposed)
    assert adapter.calibration_snapshot()["provenance"] == {
        "mode": "device", "seeded": False, "reproducible": False,
        "note": "shots on quantum hardware are not reproducible from a seed"}
    assert adapter.cost_estimate(100)["basis"] == "configure per contract"

    IbmQuantumQpu.from_env({"QGATE_IBM_TOKEN": TOKEN, "QGATE_IBM_CHANNEL": "ibm_cloud",
                            "QGATE_IBM_BACKEND": "ibm_test"}, service_factory=factory)
    assert made[1].kwargs["channel"] == "ibm_cloud" and made[1].kwargs["instance"] is None

    def failing(**kwargs: Any) -> Any:
        raise ValueError(f"invalid token {kwargs['token']}")

    with pytest.raises(QpuError) as caught:
        IbmQuantumQpu.from_env({"QGATE_IBM_TOKEN": TOKEN, "QGATE_IBM_BACKEND": "b"}, service_factory=failing)
    assert TOKEN not in str(caught.value) and "invalid token ***" in str(caught.value)
    with pytest.raises(ValueError, match="QGATE_IBM_TOKEN"):
        IbmQuantumQpu.from_env({"QGATE_IBM_BACKEND": "b"}, service_factory=factory)
    with pytest.raises(ValueError, match="QGATE_IBM_BACKEND"):
        IbmQuantumQpu.from_env({"QGATE_IBM_TOKEN": TOKEN}, service_factory=factory)
    assert TOKEN not in caplog.text


# ---------------------------------------------------------------- Braket, LocalSimulator


@pytest.fixture(scope="module")
def braket():
    from solvers.qpu_braket import BraketQpu

    return BraketQpu()


def test_braket_bit_order(braket):
    assert _run(braket, X_ON_0, 50) == {"001": 50}
    assert _run(braket, X_PERMUTED, 50) == {"100": 50}
    assert _run(braket, X_PARTIAL, 50) == {"010": 50}


def test_braket_qiskit_counts_mapping():
    from solvers.qpu_braket import qiskit_counts

    assert qiskit_counts({"10": 3, "01": 1}, [0, 2], 3) == {"001": 3, "100": 1}
    with pytest.raises(QpuError, match="expected 2"):
        qiskit_counts({"101": 1}, [0, 2], 3)


def test_braket_ghz3_through_solver(braket):
    solver = QpuCircuitSolver(braket)
    problem = parse_problem({"kind": "circuit", "qasm": GHZ3, "shots": 500})
    solution = solver.solve(problem, time_limit_s=30, seed=3)
    counts = solution.result["counts"]
    assert set(counts) <= {"000", "111"} and sum(counts.values()) == 500
    assert min(counts.values()) > 150
    calibration = solution.calibration
    assert calibration["kind"] == "noiseless local simulator" and len(calibration["sha256"]) == 64
    assert calibration["provenance"]["seeded"] is False
    assert calibration["provenance"]["reproducible"] is False
    assert solution.details["cost"] == {"usd": 0.0, "basis": "local simulator: no charge"}


def test_braket_task_state_mapping():
    from solvers.qpu_braket import task_state

    assert [task_state(s) for s in ("CREATED", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING",
                                    "CANCELLED")] == ["queued", "queued", "running", "done", "failed",
                                                      "cancelled", "cancelled"]
    with pytest.raises(QpuError, match="unrecognised"):
        task_state("LOST")


def test_braket_unconvertible_circuit_is_qpu_error(braket):
    circuit = parse_qasm(_qasm("x q[0];\nmeasure q[0] -> c[0];\nmeasure q[0] -> c[1];\n"))
    with pytest.raises(QpuError, match="cannot convert"):
        braket.submit(circuit, 10, None)
    with pytest.raises(QpuError, match="unknown job"):
        braket.poll("no-such-task")


class _StubTask:
    """A Braket task in a fixed state (a real AwsQuantumTask needs AWS)."""

    def __init__(self, state: str, reason: str = "") -> None:
        self._state, self.reason, self.cancelled = state, reason, 0
        self.id = "arn:aws:braket:stub-task"

    def state(self) -> str:
        return self._state

    def metadata(self, use_cached_value: bool = False) -> dict[str, str]:
        return {"failureReason": self.reason}

    def result(self) -> None:
        return None

    def cancel(self) -> None:
        self.cancelled += 1
        self._state = "CANCELLING"


def _braket_with_task(task: _StubTask):
    from solvers.qpu_braket import BraketQpu

    class StubDevice(braket_devices.LocalSimulator):
        def run(self, *args: Any, **kwargs: Any) -> _StubTask:
            return task

    return BraketQpu(StubDevice())


def test_braket_failed_task_maps_to_qpu_error():
    adapter = _braket_with_task(_StubTask("FAILED", "device calibrating"))
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    with pytest.raises(QpuError, match="failed: device calibrating"):
        QpuCircuitSolver(adapter).solve(problem, time_limit_s=10, seed=1)


def test_braket_timeout_cancels_task():
    task = _StubTask("QUEUED")
    adapter = _braket_with_task(task)
    problem = parse_problem({"kind": "circuit", "qasm": BELL, "shots": 10})
    with pytest.raises(TimeoutError, match="cancelled"):
        QpuCircuitSolver(adapter).solve(problem, time_limit_s=0.1, seed=1)
    assert task.cancelled == 1 and adapter.poll(task.id) == "cancelled"


def test_braket_cancel_after_done_is_noop(braket, recwarn):
    circuit = braket.transpile(parse_qasm(BELL).copy(), None)
    handle = braket.submit(circuit, 10, None)
    braket.cancel(handle)
    assert braket.poll(handle) == "done" and not recwarn.list


def test_braket_from_env_requires_arn():
    from solvers.qpu_braket import BraketQpu

    with pytest.raises(ValueError, match="QGATE_BRAKET_DEVICE_ARN"):
        BraketQpu.from_env({})


# ---------------------------------------------------------------- factory


def test_qpu_adapter_factory():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from solvers.qpu_braket import BraketQpu
    from solvers.qpu_ibm import IbmQuantumQpu

    assert isinstance(qpu_adapter(), EmulatedQpu)
    assert qpu_adapter("emulated", backend_name="fake_lima").name == "fake_lima"
    assert isinstance(qpu_adapter("ibm", backend=FakeManilaV2()), IbmQuantumQpu)
    assert isinstance(qpu_adapter("braket"), BraketQpu)
    with pytest.raises(ValueError, match="unknown qpu provider 'ionq'"):
        qpu_adapter("ionq")


def test_braket_remote_summary_without_network():
    """The AwsDevice branch of the snapshot, from a device-shaped object (no AWS call)."""
    from braket.devices import LocalSimulator

    from solvers.qpu_braket import BraketQpu

    properties = LocalSimulator().properties
    device = SimpleNamespace(name="Stub", arn="arn:aws:braket:::device/qpu/x/y", provider_name="X",
                             status="ONLINE", properties=properties)
    snapshot = BraketQpu(device).calibration_snapshot()
    assert snapshot["arn"] == device.arn and snapshot["kind"] == "aws device"
    assert len(snapshot["properties_sha256"]) == 64 and snapshot["provenance"]["mode"] == "device"
    assert BraketQpu(device).cost_estimate(10)["basis"] == "configure per contract"


def test_ibm_local_job_still_waiting_for_its_thread_is_queued_not_failed(ibm):
    """qiskit's PrimitiveJob.status() calls a future not yet picked up by its thread ERROR, and caches it:
    on a loaded machine a local-mode job then failed though its result came (CI saw it)."""
    from concurrent.futures import Future

    from qiskit.primitives.primitive_job import PrimitiveJob

    job = PrimitiveJob(lambda: None)
    job._future = Future()  # submitted, waiting for the executor's thread
    ibm._remember("local-pending", job)
    assert ibm.poll("local-pending") == "queued"
    job._future.set_running_or_notify_cancel()
    assert ibm.poll("local-pending") == "running"
    job._future.set_result([])
    assert ibm.poll("local-pending") == "done"
    failing = PrimitiveJob(lambda: None)
    failing._future = Future()
    failing._future.set_running_or_notify_cancel()
    failing._future.set_exception(RuntimeError("simulator crashed"))
    ibm._remember("local-failed", failing)
    assert ibm.poll("local-failed") == "failed"
