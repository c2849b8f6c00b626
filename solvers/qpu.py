"""The qpu lane: circuits on a quantum device through a provider adapter.

`QpuAdapter` (in `solvers.qpu_base`, re-exported here) is the provider-facing interface
(submit/poll/result/cancel plus calibration and price); `EmulatedQpu` implements it with a
qiskit-ibm-runtime fake device: the device's coupling map, basis gates and calibration data, run on Aer
with the device's noise model. `QpuCircuitSolver` is the lane's `Solver`: it transpiles, checks depth,
submits, polls against the time limit and returns counts together with the calibration snapshot that
produced them. Which adapter a provider name means is decided in `solvers.qpu_factory`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from solvers.aer import normalise_counts, simulator_seed
from solvers.base import LaneLimits, Solution, SolverRefused, Verdict
from solvers.capability import check_circuit, emulated_sampling_seconds
from solvers.circuits import parse_qasm
from solvers.qpu_base import (
    JOB_STATES,
    PRICES,
    TERMINAL_STATES,
    Price,
    ProviderQueue,
    QiskitBackendQpu,
    QpuAdapter,
    QpuError,
    device_calibration,
)

__all__ = [
    "JOB_STATES", "PRICES", "TERMINAL_STATES", "EmulatedQpu", "Price", "QpuAdapter", "QpuCircuitSolver",
    "QpuError", "device_calibration", "resolve_fake_backend",
]


def resolve_fake_backend(name: str) -> Any:
    """A qiskit-ibm-runtime fake V2 backend by its name (``fake_manila``).

    Looked up among the fake backend classes rather than through ``FakeProviderForBackendV2``, which
    instantiates every fake device (and warns about some) just to filter by name.
    """
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    for obj in vars(fake_provider).values():
        if isinstance(obj, type) and issubclass(obj, FakeBackendV2) and \
                getattr(obj, "backend_name", None) == name:
            return obj()
    raise ValueError(f"unknown fake backend {name!r}")



@dataclass
class _Job:
    circuit: Any
    shots: int
    seed: int | None
    submitted: float
    fails: bool
    state: str = "queued"
    counts: dict[str, int] | None = None
    error: str | None = None


class EmulatedQpu(QiskitBackendQpu):
    """A fake IBM device run on Aer with its noise model.

    Jobs stay ``queued`` for ``queue_delay_s`` after submission; the first ``poll`` after that runs the
    simulation synchronously and reports ``done`` (or ``failed``, with probability ``failure_rate``,
    drawn from an RNG seeded by ``failure_seed``). The backend and its noise model are built on first use
    and cached per adapter.

    A job is simulated on the physical qubits it touches only: the ISA circuit is compacted onto those
    ``k`` qubits and run with the device noise model restricted to them (readout, gate and thermal
    relaxation errors of those qubits and the couplings among them), which on a 100+ qubit device is
    ~20x faster than Aer with the whole device's noise model and gives the same seeded counts. The
    restricted simulators are kept per layout (the tuple of active physical qubits) in an LRU of
    `max_layouts_kept`.
    """

    max_layouts_kept = 64
    provider_label = "Emulated"
    # The calibration-drift drill (``qgate faults set qpu.readout_flip=P``): each measured bit of each shot
    # flips with this probability on top of the device's noise, as a drifted readout calibration would.
    readout_drift = 0.0

    def __init__(self, backend_name: str = "fake_manila", *, queue_delay_s: float = 0.0,
                 failure_rate: float = 0.0, max_depth: int = 2000, failure_seed: int | None = None,
                 price: Price | None = None) -> None:
        if queue_delay_s < 0:
            raise ValueError("queue_delay_s must be non-negative")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        super().__init__(max_depth=max_depth)
        self.backend_name = backend_name
        self.queue_delay_s = queue_delay_s
        self.failure_rate = failure_rate
        self.price = price or PRICES["emulated"]
        self._rng = random.Random(failure_seed)
        self._lock = threading.Lock()  # the failure RNG and the jobs' state transitions
        self._ids = itertools.count(1)
        self._layout_lock = threading.Lock()
        self._layout_simulators: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._layout_hits = 0
        self._layout_misses = 0

    @classmethod
    def configured(cls, *, backend_name: str, queue_delay_s: float, failure_rate: float,
                   env: Mapping[str, str]) -> EmulatedQpu:
        """The emulated device ``backend_name`` with the configured queue delay and failure rate."""
        return cls(backend_name, queue_delay_s=queue_delay_s, failure_rate=failure_rate)

    @cached_property
    def backend(self) -> Any:
        return resolve_fake_backend(self.backend_name)

    @cached_property
    def simulator(self) -> Any:
        """AerSimulator carrying the device's noise model, target and coupling map."""
        from qiskit_aer import AerSimulator

        return AerSimulator.from_backend(self.backend)

    @cached_property
    def _device_noise(self) -> Any:
        """The whole device's noise model, as `AerSimulator.from_backend` builds it."""
        from qiskit_aer.noise import NoiseModel

        return NoiseModel.from_backend(self.backend)

    def layout_simulator(self, layout: tuple[int, ...]) -> Any | None:
        """AerSimulator carrying the device noise restricted to the physical qubits ``layout``.

        Qubit ``layout[i]`` of the device is qubit ``i`` of the simulator. Cached per layout (LRU).
        None when the device's noise model cannot be restricted (then the whole device is simulated).
        """
        layout = tuple(int(q) for q in layout)
        with self._layout_lock:
            if layout in self._layout_simulators:
                simulator = self._layout_simulators[layout]
                self._layout_simulators.move_to_end(layout)
                self._layout_hits += 1
                return simulator
            self._layout_misses += 1
            from qiskit_aer import AerSimulator

            noise = _restricted_noise_model(self._device_noise, layout)
            if noise is None:
                simulator = None
            elif noise.is_ideal():
                simulator = AerSimulator()
            else:
                simulator = AerSimulator(noise_model=noise)
            self._layout_simulators[layout] = simulator
            while len(self._layout_simulators) > self.max_layouts_kept:
                self._layout_simulators.popitem(last=False)
            return simulator

    def layout_cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the per-layout simulator cache."""
        with self._layout_lock:
            return {"hits": self._layout_hits, "misses": self._layout_misses,
                    "size": len(self._layout_simulators), "max_size": self.max_layouts_kept}

    def _simulation(self, circuit: Any) -> tuple[Any, Any]:
        """The simulator and circuit to run: compacted onto the active qubits when that is smaller."""
        active = _active_qubits(circuit)
        if not active or len(active) >= circuit.num_qubits or _has_vars(circuit):
            return self.simulator, circuit
        simulator = self.layout_simulator(active)
        if simulator is None:
            return self.simulator, circuit
        return simulator, _compact_circuit(circuit, active)

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        handle = f"{self.backend_name}-{next(self._ids)}"
        with self._lock:
            fails = self._rng.random() < self.failure_rate
            return self._remember(handle, _Job(circuit, shots, seed, time.monotonic(), fails))

    def poll(self, handle: str) -> str:
        with self._lock:
            job = self._known(handle)
            if job.state != "queued" or time.monotonic() - job.submitted < self.queue_delay_s:
                return job.state
            job.state = "running"
        self._execute(job)
        return job.state

    def _execute(self, job: _Job) -> None:
        if job.fails:
            job.error, job.state = f"emulated provider failure on {self.backend_name}", "failed"
            return
        try:
            simulator, circuit = self._simulation(job.circuit)
            run = simulator.run(circuit, shots=job.shots, seed_simulator=simulator_seed(job.seed))
            result = run.result()
        except Exception as exc:  # Aer raises assorted types; the caller sees one provider error
            job.error, job.state = f"simulation error on {self.backend_name}: {exc}", "failed"
            return
        if not result.success:
            job.error, job.state = f"simulation failed on {self.backend_name}: {result.status}", "failed"
            return
        counts = normalise_counts(result.get_counts(0))
        if self.readout_drift > 0:
            counts = flip_bits(counts, self.readout_drift, random.Random(job.seed))
        job.counts, job.state = counts, "done"

    def result(self, handle: str) -> dict[str, int]:
        with self._lock:
            job = self._known(handle)
        if job.state == "done" and job.counts is not None:
            return dict(job.counts)
        if job.state == "failed":
            raise QpuError(job.error or f"job {handle} failed")
        raise self._not_done(handle, job.state)

    def cancel(self, handle: str) -> None:
        with self._lock:
            job = self._known(handle)
            if job.state == "queued":
                job.state = "cancelled"

    def sampling_seconds(self, qubits: int, two_qubit_gates: int, shots: int) -> float | None:
        """Aer simulating the device's noise on this machine (`solvers.capability.emulated_sampling_seconds`,
        fitted on fake_guadalupe): the one provider whose sampling time is ours."""
        return emulated_sampling_seconds(qubits, two_qubit_gates, shots)

    def queue_info(self) -> ProviderQueue:
        """The configured queue: every job waits ``queue_delay_s`` at the emulated provider."""
        return ProviderQueue(source=f"emulated {self.backend_name}: configured queue delay",
                             wait_s=self.queue_delay_s)

    def calibration_snapshot(self) -> dict[str, Any]:
        """The stamped snapshot, built once: a fake device's calibration does not change."""
        return dict(self._calibration)

    @cached_property
    def _calibration(self) -> dict[str, Any]:
        return super().calibration_snapshot()


def flip_bits(counts: dict[str, int], probability: float, rng: random.Random) -> dict[str, int]:
    """``counts`` after each bit of each shot flipped independently with ``probability``."""
    flipped: dict[str, int] = {}
    for bits, count in counts.items():
        for _ in range(count):
            shot = "".join(("1" if b == "0" else "0") if rng.random() < probability else b for b in bits)
            flipped[shot] = flipped.get(shot, 0) + 1
    return dict(sorted(flipped.items()))


def _active_qubits(circuit: Any) -> tuple[int, ...]:
    """Indices of the circuit's qubits that any instruction other than a barrier acts on, ascending."""
    active: set[int] = set()
    for instruction in circuit.data:
        if instruction.operation.name != "barrier":
            active.update(circuit.find_bit(q).index for q in instruction.qubits)
    return tuple(sorted(active))


def _has_vars(circuit: Any) -> bool:
    """Whether the circuit carries classical variables or stretches (not carried over by compaction)."""
    return bool(getattr(circuit, "num_vars", 0) or getattr(circuit, "num_stretches", 0))


def _compact_circuit(circuit: Any, active: tuple[int, ...]) -> Any:
    """``circuit`` on ``len(active)`` qubits: qubit ``active[i]`` becomes qubit ``i``.

    Classical bits and registers are kept as they are (same order), so counts keys are unchanged.
    Barriers keep only their active qubits (they are no-ops on the simulator).
    """
    from qiskit.circuit import QuantumCircuit, QuantumRegister

    compact = QuantumCircuit(QuantumRegister(len(active), "q"), name=circuit.name,
                             global_phase=circuit.global_phase, metadata=dict(circuit.metadata or {}))
    compact.add_bits(circuit.clbits)
    for creg in circuit.cregs:
        compact.add_register(creg)
    index = {circuit.qubits[p]: compact.qubits[i] for i, p in enumerate(active)}
    for instruction in circuit.data:
        qubits = [index[q] for q in instruction.qubits if q in index]
        if instruction.operation.name == "barrier":
            if qubits:
                compact.barrier(*qubits)
            continue
        compact.append(instruction.operation, qubits, instruction.clbits, copy=False)
    return compact


def _restricted_noise_model(device: Any, layout: tuple[int, ...]) -> Any | None:
    """``device``'s noise model cut down to the physical qubits ``layout``, renumbered 0..k-1.

    None when the model holds a custom noise pass that cannot be restricted.

    Keeps the all-qubit errors, the readout and gate errors whose qubits all lie in ``layout`` (gate
    errors are defined relative to their gate's qubits, so only the keys change), and the thermal
    relaxation pass for delays with its per-qubit T1/T2/excited-population arrays sliced to ``layout``.
    """
    from qiskit.circuit import Delay
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.noise.passes import RelaxationNoisePass

    remap = {p: i for i, p in enumerate(layout)}
    noise = NoiseModel(basis_gates=device.basis_gates)
    for name, error in device._default_quantum_errors.items():
        noise.add_all_qubit_quantum_error(error, name, warnings=False)
    if device._default_readout_error is not None:
        noise.add_all_qubit_readout_error(device._default_readout_error, warnings=False)
    for qubits, error in device._local_readout_errors.items():
        if all(q in remap for q in qubits):
            noise.add_readout_error(error, [remap[q] for q in qubits], warnings=False)
    for name, errors in device._local_quantum_errors.items():
        for qubits, error in errors.items():
            if all(q in remap for q in qubits):
                noise.add_quantum_error(error, name, [remap[q] for q in qubits], warnings=False)
    for noise_pass in device._custom_noise_passes:
        # from_backend's pass adds relaxation to delays, whose duration is on the instruction itself; a
        # pass looking durations up in the target by (device) qubits cannot be renumbered.
        if type(noise_pass) is not RelaxationNoisePass or noise_pass._ops != (Delay,):
            return None
        picked = list(layout)
        noise._custom_noise_passes.append(RelaxationNoisePass(  # lists, as qiskit hashes pass arguments
            t1s=noise_pass._t1s[picked].tolist(), t2s=noise_pass._t2s[picked].tolist(),
            dt=noise_pass._dt, op_types=Delay,
            excited_state_populations=noise_pass._p1s[picked].tolist(), target=noise_pass._target))
    return noise


class QpuCircuitSolver:
    """The qpu lane's solver: one circuit, one adapter."""

    lane = "qpu"
    kinds = frozenset({"circuit"})

    def __init__(self, adapter: QpuAdapter, *, poll_interval_s: float = 0.02) -> None:
        self.adapter = adapter
        self.poll_interval_s = poll_interval_s
        self.id = f"qpu-{adapter.name}"
        self.version = adapter.version

    def can_solve(self, problem: Any, limits: LaneLimits) -> Verdict:
        if problem.kind not in self.kinds:
            return Verdict.no(f"unsupported: {self.id} does not solve '{problem.kind}'")
        device = self.adapter.limits()
        verdict = check_circuit(problem, limits, device_qubits=device.max_qubits, device=self.adapter.name)
        if verdict.ok and device.max_shots is not None and problem.shots > device.max_shots:
            return Verdict.no(f"capacity: {problem.shots} shots > {device.max_shots} on {self.adapter.name}")
        return verdict

    def solve(self, problem: Any, *, time_limit_s: float, seed: int | None) -> Solution:
        deadline = time.monotonic() + time_limit_s
        adapter = self.adapter
        with adapter.attempt(deadline):
            circuit = adapter.transpile(parse_qasm(problem.qasm).copy(), seed)
            depth = circuit.depth()
            max_depth = adapter.limits().max_depth
            if max_depth is not None and depth > max_depth:
                raise SolverRefused(f"capacity: depth {depth} > {max_depth} after transpiling to {adapter.name}")
            handle, counts, queue_s = self.sample(circuit, problem.shots, seed, deadline, time_limit_s)
            calibration = adapter.calibration_snapshot()
        details = {
            "backend": adapter.name,
            "job": handle,
            "transpiled_depth": depth,
            "layout": _physical_qubits(circuit),
            "shots": problem.shots,
            "seed": seed,
            "queue_s": queue_s,
            "cost": adapter.cost_estimate(problem.shots),
        }
        return Solution(result={"counts": counts}, details=details, calibration=calibration)

    def sample(self, circuit: Any, shots: int, seed: int | None, deadline: float,
               time_limit_s: float) -> tuple[str, dict[str, int], float]:
        """Submit an ISA circuit, wait for it until ``deadline`` (``time.monotonic``), return the job's
        handle, counts and seconds in the provider's hands. The provider's job is cancelled when the
        deadline passes, and when the attempt is cancelled or its alarm fires while the job waits (the
        exception then carries ``provider_job``: whether the provider confirmed the cancel)."""
        adapter = self.adapter
        handle = adapter.submit(circuit, shots, seed)
        submitted = time.monotonic()
        try:
            state = self._wait(handle, deadline, time_limit_s)
        except TimeoutError:
            raise  # the solver's own deadline: _wait has cancelled the job and says so
        except BaseException as exc:  # the attempt was cancelled or its alarm fired while the job waited
            exc.provider_job = self._cancel_on_the_way_out(handle)  # type: ignore[attr-defined]
            raise
        if state != "done":
            adapter.result(handle)  # raises the provider's QpuError for failed/cancelled jobs
            raise QpuError(f"job {handle} ended {state}")
        return handle, adapter.result(handle), round(time.monotonic() - submitted, 4)

    def _cancel_on_the_way_out(self, handle: str) -> dict[str, Any]:
        """Cancel the provider's job and say whether the provider confirms it (its state is then
        ``cancelled``); a provider error is reported, never raised over the exception in flight."""
        try:
            self.adapter.cancel(handle)
            state = self.adapter.poll(handle)
        except Exception as exc:
            return {"job": handle, "backend": self.adapter.name, "cancel_confirmed": False,
                    "error": self.adapter.redact(f"{type(exc).__name__}: {exc}")[:300]}
        return {"job": handle, "backend": self.adapter.name, "cancel_confirmed": state == "cancelled",
                "state": state}

    def _wait(self, handle: str, deadline: float, time_limit_s: float) -> str:
        while True:
            try:
                state = self.adapter.poll(handle)
            except TimeoutError as exc:  # the provider did not answer in the attempt's time: cancel the job
                raise TimeoutError(f"{exc}; {self._cancel_after_timeout(handle)}") from None
            if state in TERMINAL_STATES:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.adapter.cancel(handle)
                raise TimeoutError(f"job {handle} on {self.adapter.name} still {state} after the "
                                   f"{time_limit_s:g} s time limit; cancelled")
            time.sleep(min(max(self.poll_interval_s, self.adapter.poll_interval_s), remaining))

    def _cancel_after_timeout(self, handle: str) -> str:
        """Cancel ``handle`` once its attempt has run out of time; what became of it, for the reason."""
        try:
            self.adapter.cancel(handle)
        except (QpuError, OSError) as exc:  # TimeoutError included: the job stays queued at the provider
            return f"job {handle} could not be cancelled: {exc}"
        return f"job {handle} cancelled"


def _physical_qubits(circuit: Any) -> list[int]:
    """Device qubits holding the circuit's qubits at the end (after routing's swaps)."""
    layout = getattr(circuit, "layout", None)
    if layout is None:
        return list(range(circuit.num_qubits))
    return [int(q) for q in layout.final_index_layout()]
