"""The providers' own queue figures: each adapter's ``queue_info()`` read from its SDK's own objects, the
published figure read back defensively, and what it does to a prediction and a queue ETA."""

from __future__ import annotations

import json

import fakeredis
import pytest

from routing import provider_queue
from routing.predict import PredictConfig
from routing.signals import LaneSignals
from solvers.qpu import EmulatedQpu
from solvers.qpu_braket import BraketQpu
from solvers.qpu_ibm import IbmQuantumQpu


def test_the_emulated_device_reports_its_configured_queue() -> None:
    info = EmulatedQpu("fake_manila", queue_delay_s=4.5).queue_info()
    assert info.wait_s == 4.5 and info.pending_jobs is None and "fake_manila" in info.source


def test_ibm_reports_the_backends_pending_jobs() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    info = IbmQuantumQpu(backend=backend).queue_info()
    assert info is not None and info.pending_jobs == backend.status().pending_jobs
    assert info.source == "IBM fake_manila: pending_jobs"


class _Device:
    """An AwsDevice's queue_depth() answer, built from the Braket SDK's own types."""

    name = "SV1"

    def __init__(self, normal: str) -> None:
        self.normal = normal

    def queue_depth(self):  # noqa: ANN201 - the SDK's shape
        from braket.aws.queue_information import QueueDepthInfo, QueueType

        return QueueDepthInfo(quantum_tasks={QueueType.NORMAL: self.normal, QueueType.PRIORITY: "3"}, jobs="0")


@pytest.mark.parametrize("normal, pending", [("23", 23), ("0", 0), (">4000", 4000), ("many", None)])
def test_braket_reports_the_normal_task_queue(normal: str, pending: int | None) -> None:
    from braket.devices import LocalSimulator

    adapter = BraketQpu(LocalSimulator())
    adapter.device = _Device(normal)  # a cloud device's answer, without the cloud
    info = adapter.queue_info()
    assert (info.pending_jobs if info else None) == pending


def test_braket_local_simulators_have_no_queue() -> None:
    from braket.devices import LocalSimulator

    adapter = BraketQpu(LocalSimulator())
    assert adapter.queue_info() is None


@pytest.mark.parametrize("raw, expected", [
    (None, None), ("", None), ("not json", None), ("[1, 2]", None), ('"text"', None),
    ('{"source": "x", "wait_s": 3}', {"source": "x", "wait_s": 3}),
])
def test_a_published_figure_is_read_back_or_ignored(raw: str | None, expected: dict | None) -> None:
    assert provider_queue.loads(raw) == expected


@pytest.mark.parametrize("figure, mean, wait", [
    ({"wait_s": 12.5}, None, 12.5), ({"pending_jobs": 4}, 2.0, 8.0), ({"pending_jobs": 4}, None, None),
    ({"wait_s": -1, "pending_jobs": 2}, 1.5, 3.0), ({"wait_s": "soon"}, 1.0, None), ({}, 1.0, None),
    (None, 1.0, None), ({"pending_jobs": -3}, 1.0, None),
])
def test_the_wait_a_figure_implies(figure: dict | None, mean: float | None, wait: float | None) -> None:
    assert provider_queue.wait_s(figure, mean) == wait


def test_a_longer_provider_queue_raises_the_predicted_run_time() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    signals = LaneSignals(redis, PredictConfig())
    from routing.telemetry import Sample

    for _ in range(4):
        pipe = redis.pipeline()
        signals.telemetry.record(pipe, Sample("qpu", "ok", 0.0, 1.0), "circuit:2", 1e12)
        pipe.execute()
    before = signals.outlooks(["qpu"], "circuit:2", "job-a", now=1e12)["qpu"]
    provider_queue.publish(redis, "qpu", {"source": "IBM ibm_x: pending_jobs", "wait_s": 30.0}, 10)
    after = signals.outlooks(["qpu"], "circuit:2", "job-b", now=1e12)["qpu"]
    assert before.run_s is not None and before.run_s < 5 and after.run_s == 30.0
    assert after.basis.endswith("; provider (IBM ibm_x: pending_jobs): wait 30.0 s")
    assert after.wait_s == before.wait_s  # the provider's queue is waited out inside the attempt


def test_the_figure_expires_with_its_publisher() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    provider_queue.publish(redis, "qpu", {"source": "x", "pending_jobs": 1}, 0.05)
    assert json.loads(redis.get(provider_queue.provider_queue_key("qpu")))["pending_jobs"] == 1
    import time

    time.sleep(0.1)
    assert redis.get(provider_queue.provider_queue_key("qpu")) is None
