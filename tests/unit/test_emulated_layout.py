"""EmulatedQpu simulates only the physical qubits a circuit touches, with the device noise restricted to them."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qiskit import QuantumCircuit, transpile  # noqa: E402

from solvers.aer import normalise_counts, simulator_seed  # noqa: E402
from solvers.qpu import EmulatedQpu, _active_qubits  # noqa: E402

SHOTS = 1000


def ghz3() -> QuantumCircuit:
    circuit = QuantumCircuit(3)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.cx(1, 2)
    circuit.measure_all()
    return circuit


def bell_swapped() -> QuantumCircuit:
    """Two qubits, two bits measured crosswise, and a delay so thermal relaxation noise applies."""
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.delay(2000, 1, unit="dt")
    circuit.x(1)
    circuit.measure([0, 1], [1, 0])
    return circuit


def run(adapter: EmulatedQpu, circuit: QuantumCircuit, seed: int) -> dict[str, int]:
    handle = adapter.submit(circuit, SHOTS, seed)
    assert adapter.poll(handle) == "done"
    return adapter.result(handle)


def full_device_counts(adapter: EmulatedQpu, circuit: QuantumCircuit, seed: int) -> dict[str, int]:
    """Reference: the whole device's noise model on all its qubits (the behaviour before compaction)."""
    result = adapter.simulator.run(circuit, shots=SHOTS, seed_simulator=simulator_seed(seed)).result()
    return normalise_counts(result.get_counts(0))


@pytest.fixture(scope="module")
def manila() -> EmulatedQpu:
    return EmulatedQpu("fake_manila")


@pytest.mark.parametrize("seed", [1, 42])
def test_ghz3_counts_match_full_device_model(manila: EmulatedQpu, seed: int) -> None:
    circuit = manila.transpile(ghz3(), seed)
    active = _active_qubits(circuit)
    assert len(active) == 3 < manila.backend.num_qubits
    counts = run(manila, circuit, seed)
    assert counts == full_device_counts(manila, circuit, seed)
    assert sum(counts.values()) == SHOTS


@pytest.mark.parametrize("layout", [[3, 4], [4, 2], [2, 1]])
def test_offset_layout_counts_match_full_device_model(manila: EmulatedQpu, layout: list[int]) -> None:
    circuit = transpile(bell_swapped(), backend=manila.backend, initial_layout=layout,
                        optimization_level=1, seed_transpiler=3)
    active = _active_qubits(circuit)
    assert active != tuple(range(len(active)))  # the physical qubits are not simply 0..k-1
    counts = run(manila, circuit, 5)
    assert counts == full_device_counts(manila, circuit, 5)
    assert counts.get("01", 0) + counts.get("10", 0) > 0.8 * SHOTS


def test_layout_cache_is_hit_on_second_run() -> None:
    adapter = EmulatedQpu("fake_manila")
    circuit = adapter.transpile(ghz3(), 1)
    run(adapter, circuit, 1)
    assert adapter.layout_cache_info()["misses"] == 1 and adapter.layout_cache_info()["hits"] == 0
    run(adapter, circuit, 2)
    info = adapter.layout_cache_info()
    assert info["misses"] == 1 and info["hits"] == 1 and info["size"] == 1
    assert adapter.layout_simulator(_active_qubits(circuit)) is adapter.layout_simulator(_active_qubits(circuit))


def test_layout_cache_is_bounded() -> None:
    adapter = EmulatedQpu("fake_manila")
    adapter.max_layouts_kept = 2
    for layout in [(0, 1), (1, 2), (2, 3)]:
        adapter.layout_simulator(layout)
    assert adapter.layout_cache_info()["size"] == 2
    adapter.layout_simulator((0, 1))  # evicted first, so built again
    assert adapter.layout_cache_info()["misses"] == 4


def test_circuit_on_every_qubit_runs_on_full_device() -> None:
    adapter = EmulatedQpu("fake_manila")
    circuit = QuantumCircuit(5)
    circuit.h(0)
    for q in range(4):
        circuit.cx(q, q + 1)
    circuit.measure_all()
    isa = adapter.transpile(circuit, 1)
    counts = run(adapter, isa, 1)
    assert counts == full_device_counts(adapter, isa, 1)
    assert adapter.layout_cache_info()["misses"] == 0


def test_large_device_warm_run_is_fast_and_plausible() -> None:
    adapter = EmulatedQpu("fake_sherbrooke")
    assert adapter.backend.num_qubits == 127
    circuit = adapter.transpile(ghz3(), 1)
    run(adapter, circuit, 1)  # cold: loads the device noise model and builds the layout's simulator
    started = time.perf_counter()
    counts = run(adapter, circuit, 2)
    warm_s = time.perf_counter() - started
    # Measured ~0.02-0.04 s warm (vs ~1-2.5 s for the whole-device model); 2 s leaves room on a busy machine.
    assert warm_s < 2.0, f"warm GHZ-3 run on fake_sherbrooke took {warm_s:.3f} s"
    assert sum(counts.values()) == SHOTS
    assert counts.get("000", 0) + counts.get("111", 0) > 0.8 * SHOTS
    assert adapter.layout_cache_info()["hits"] == 1
