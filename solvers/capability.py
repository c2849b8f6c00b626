"""Cheap capability checks shared by the solvers' ``can_solve`` and the registry's ``static_verdict``.

Nothing here imports qiskit, PyVRP or PuLP: the HTTP ingress runs these checks while planning. (Counting a
circuit's qubits parses its QASM, which imports qiskit, but validating a circuit problem already did that.)
Refusal reasons start with ``capacity:`` so callers can tell "too big for this lane" from "cannot do it".
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from solvers.base import LaneLimits, Verdict

QUBO_EXACT_MAX_VARS = 20
# Simulated annealing takes any QUBO the validation admits (`solvers.problems.MAX_QUBO_VARS`).
QUBO_ANNEAL_MAX_VARS = 4096
# The exact TSP MILP (`solvers.heuristic.MilpTsp`) is tried up to this many nodes; larger tours go to
# PyVRP. Measured on the reference machine (2 cores), random Euclidean instances (the hardest kind
# seen; asymmetric ones prove faster): HiGHS proves optimality at 16 nodes in median 0.08-0.13 s, p90
# 1.2 s, and returns its best tour flagged not optimal when the clock stops it (bench.milp).
MILP_TSP_MAX_NODES = 16
SIM_DEFAULT_MAX_QUBITS = 24

QAOA_KINDS = frozenset({"qubo", "tsp", "assignment"})
# QAOA simulates the statevector once per optimiser evaluation, a hundred times or more per job, so it
# stops below the sim lane's single-circuit limit: at 20 qubits an evaluation takes ~0.25 s on the
# reference machine (2 cores), a minimal optimisation ~15 s; each further qubit doubles both.
QAOA_DEFAULT_MAX_QUBITS = 20
QAOA_DEFAULT_SHOTS = 1024
# Longest expected run `check_qaoa` accepts (the table below × the planned evaluations).
QAOA_MAX_EXPECTED_S = 60.0
# Two QAOA layers up to this many qubits; one above, where each evaluation is dearer.
QAOA_REPS2_MAX_QUBITS = 12
# Optimiser evaluations planned per job at one and two layers; `solvers.qaoa` runs fewer when the time
# limit is shorter.
QAOA_EVALUATIONS = {1: 60, 2: 120}
# Seconds per QAOA energy evaluation (bind, Aer statevector, probabilities · energies) at one layer,
# measured on the reference machine (2 cores) with every pair of qubits coupled, the worst case.
QAOA_SECONDS_PER_EVALUATION: dict[int, float] = {
    1: 0.001, 2: 0.001, 3: 0.001, 4: 0.001, 5: 0.001, 6: 0.001, 7: 0.001, 8: 0.001,
    9: 0.0012, 10: 0.0014, 11: 0.0018, 12: 0.0025, 13: 0.005, 14: 0.007, 15: 0.015, 16: 0.03,
    17: 0.06, 18: 0.1, 19: 0.17, 20: 0.25, 21: 0.45, 22: 0.9,
}
# A second layer costs this fraction of the first again (measured: two layers ×1.4 to ×1.9 of one).
QAOA_EXTRA_LAYER_SHARE = 0.8


@lru_cache(maxsize=None)
def package_version(name: str) -> str:
    """An installed distribution's version without importing it (importing qiskit or PyVRP is slow)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def check_nodes(problem: Any, limits: LaneLimits) -> Verdict:
    """Routing problems: node count against the lane's published ``max_nodes``."""
    if limits.max_nodes is not None and problem.size > limits.max_nodes:
        return Verdict.no(f"capacity: {problem.size} nodes > {limits.max_nodes}")
    return Verdict.yes()


def check_qubo_exact(problem: Any) -> Verdict:
    """Exact enumeration visits all 2**n bit vectors, so it is limited to small n."""
    if problem.n > QUBO_EXACT_MAX_VARS:
        return Verdict.no(f"capacity: n={problem.n} > {QUBO_EXACT_MAX_VARS} for exact enumeration")
    return Verdict.yes()


def check_qubo_anneal(problem: Any) -> Verdict:
    """Simulated annealing scales to every QUBO the validation admits; it returns no optimality proof."""
    if problem.n > QUBO_ANNEAL_MAX_VARS:
        return Verdict.no(f"capacity: n={problem.n} > {QUBO_ANNEAL_MAX_VARS} for simulated annealing")
    return Verdict.yes()


def check_qubo_heuristic(problem: Any) -> Verdict:
    """The heuristic lane's QUBO solvers together: exact enumeration for small n, annealing beyond."""
    exact = check_qubo_exact(problem)
    return exact if exact.ok else check_qubo_anneal(problem)


def check_tsp_milp(problem: Any, limits: LaneLimits) -> Verdict:
    """The exact TSP MILP: the lane's ``max_nodes``, then its own ``MILP_TSP_MAX_NODES``."""
    verdict = check_nodes(problem, limits)
    if verdict.ok and problem.size > MILP_TSP_MAX_NODES:
        return Verdict.no(f"capacity: {problem.size} nodes > {MILP_TSP_MAX_NODES} for the exact TSP MILP")
    return verdict


def check_circuit(problem: Any, limits: LaneLimits, *, default_max_qubits: int | None = None,
                  device_qubits: int | None = None, device: str | None = None) -> Verdict:
    """Qubits against the device (when there is one) and the lane's ``max_qubits`` (``default_max_qubits``
    when the lane publishes none); shots against the lane's ``max_shots``."""
    qubits = problem.num_qubits
    if device_qubits is not None and qubits > device_qubits:
        return Verdict.no(f"capacity: {qubits} qubits > {device_qubits} on {device or 'the device'}")
    lane_max = limits.max_qubits if limits.max_qubits is not None else default_max_qubits
    if lane_max is not None and qubits > lane_max:
        return Verdict.no(f"capacity: {qubits} qubits > {lane_max}")
    if limits.max_shots is not None and problem.shots > limits.max_shots:
        return Verdict.no(f"capacity: {problem.shots} shots > {limits.max_shots}")
    return Verdict.yes()


def qaoa_qubits(problem: Any) -> int:
    """Qubits of the QAOA encoding (`solvers.encodings`): qubo n, tsp (n-1)², assignment loads × trucks."""
    if problem.kind == "qubo":
        return int(problem.n)
    if problem.kind == "tsp":
        return (problem.size - 1) ** 2
    if problem.kind == "assignment":
        return len(problem.costs) * len(problem.capacities)
    raise ValueError(f"no QAOA encoding for '{problem.kind}'")


def qaoa_reps(qubits: int) -> int:
    """QAOA layers by default: two for small problems, one when each evaluation gets dear."""
    return 2 if qubits <= QAOA_REPS2_MAX_QUBITS else 1


def qaoa_seconds_per_evaluation(qubits: int, reps: int) -> float:
    """Expected seconds for one energy evaluation, from the measured table (doubling beyond it)."""
    top = max(QAOA_SECONDS_PER_EVALUATION)
    one_layer = QAOA_SECONDS_PER_EVALUATION.get(max(qubits, 1)) or \
        QAOA_SECONDS_PER_EVALUATION[top] * 2.0 ** (qubits - top)
    return one_layer * (1.0 + QAOA_EXTRA_LAYER_SHARE * (reps - 1))


def qaoa_setup_seconds(qubits: int) -> float:
    """Expected seconds outside the evaluations, with qiskit already imported: building and transpiling
    the circuit (~0.04 s), the energies of all 2**n states (~0.1 s at 20 qubits), sampling and decoding."""
    return 0.1 + 1.5e-7 * 2.0 ** qubits


def qaoa_expected_seconds(qubits: int, reps: int, evaluations: int) -> float:
    return qaoa_setup_seconds(qubits) + evaluations * qaoa_seconds_per_evaluation(qubits, reps)


def check_qaoa(problem: Any, limits: LaneLimits, *, default_max_qubits: int = QAOA_DEFAULT_MAX_QUBITS,
               shots: int = QAOA_DEFAULT_SHOTS) -> Verdict:
    """QAOA on the sim lane: the encoding's qubits against the lane's ``max_qubits`` capped at
    ``default_max_qubits``, the shots against ``max_shots``, and the expected run time (measured table ×
    planned evaluations) against ``QAOA_MAX_EXPECTED_S``.

    The lane's published ``max_qubits`` is what one circuit may hold; QAOA simulates hundreds of them
    per job, hence its own, smaller cap.
    """
    if problem.kind not in QAOA_KINDS:
        return Verdict.no(f"unsupported: QAOA does not solve '{problem.kind}'")
    qubits = qaoa_qubits(problem)
    cap = default_max_qubits if limits.max_qubits is None else min(limits.max_qubits, default_max_qubits)
    if qubits > cap:
        return Verdict.no(f"capacity: {qubits} qubits > {cap}")
    if limits.max_shots is not None and shots > limits.max_shots:
        return Verdict.no(f"capacity: {shots} shots > {limits.max_shots}")
    reps = qaoa_reps(qubits)
    seconds = qaoa_expected_seconds(qubits, reps, QAOA_EVALUATIONS[reps])
    if seconds > QAOA_MAX_EXPECTED_S:
        return Verdict.no(f"capacity: QAOA on {qubits} qubits needs ~{math.ceil(seconds)} s > "
                          f"{QAOA_MAX_EXPECTED_S:g} s")
    return Verdict.yes()


# QAOA on the qpu lane (`solvers.qpu_qaoa`): one layer. Up to this many variables its angles are searched
# on the statevector, as the sim lane's; beyond, on the closed-form one-layer energy (`solvers.qaoa_p1`).
QPU_QAOA_STATEVECTOR_MAX_QUBITS = QAOA_DEFAULT_MAX_QUBITS
# The largest encoding the qpu lane builds: above the largest device a provider offers (IBM Heron, 156
# qubits), and a bound on the planner's work, which builds the encoding to count its couplings.
QPU_QAOA_MAX_QUBITS = 160
# Seconds per closed-form evaluation per (coupling x qubit), and a floor. Measured on the reference machine
# (2 cores): 0.06 ms for 27 couplings on 24 qubits, 4 ms for 1,225 on 50, 146 ms for 11,175 on 150
# (7-9e-8 per coupling-qubit; the constant keeps a margin for a loaded machine).
QAOA_CLOSED_FORM_SECONDS_PER_COUPLING_QUBIT = 1.5e-7
QAOA_CLOSED_FORM_SECONDS_FLOOR = 1e-4
QPU_QAOA_SHOTS = 1024
# Where a device's errors leave noise only, as a product of its median two-qubit gate error and the QAOA
# circuit's two-qubit gates before routing (`qpu_useful_two_qubit_gates`). Measured with
# `python -m bench.qpu_depth` on the emulated fake_guadalupe (median CX error 0.0101): a dense 8-variable QUBO
# with 1..8 layers, 1024 shots, sampled mean energy below uniform sampling's by 15 standard errors at 84
# gates before routing (359 after), 3.2 at 168, 1.7 at 196 (849 after, depth 649), none at 224: 196 x 0.0101.
QPU_NOISE_BUDGET = 1.98


def qpu_useful_two_qubit_gates(median_two_qubit_error: float | None) -> int | None:
    """The QAOA size (two-qubit gates before routing) beyond which a device with this median two-qubit
    gate error returns samples indistinguishable from uniform; None when the error is unknown."""
    if median_two_qubit_error is None or not median_two_qubit_error > 0:
        return None
    return int(QPU_NOISE_BUDGET / median_two_qubit_error)


def qaoa_closed_form_seconds(qubits: int, couplings: int) -> float:
    """Expected seconds for one closed-form evaluation of the one-layer QAOA energy."""
    return QAOA_CLOSED_FORM_SECONDS_FLOOR + QAOA_CLOSED_FORM_SECONDS_PER_COUPLING_QUBIT * couplings * qubits


def qaoa_two_qubit_gates(problem: Any, reps: int = 1) -> int:
    """Two-qubit gates (RZZ) of the QAOA circuit before routing: one per coupling of the encoding per layer.

    Builds the encoding, so call it only once the qubits are known to be few (`qaoa_qubits`)."""
    from solvers.encodings import encode

    return len(encode(problem).qubo.interactions()) * reps


# What a QAOA run on the emulated device takes besides the angle search (`solvers.qpu_qaoa`), measured with
# `python -m bench.qpu_estimate` on fake_guadalupe (2 cores shared, warm worker), dense and chain QUBOs of
# 6 to 16 variables and the 4-node tsp. Transpiling to the device: 5-13 ms. Sampling: Aer simulates the
# device's noise on the problem's qubits, as one density matrix while the shots outnumber the 2**n states
# (Aer's automatic choice: cost ~ 4**n), else shot by shot (trajectories: cost ~ shots x 2**(n/2) here, the
# statevector's 2**n softened by Aer's fusion and threads). Both scale with the transpiled instructions,
# weighted: routing on heavy-hex turns each RZZ into ~4.3 two-qubit gates, and a noisy two-qubit gate costs
# ~3 single-qubit ones (fitted: 8 + 5 per qubit + 13 per RZZ before routing).
QPU_QAOA_TRANSPILE_S = 0.01
QPU_QAOA_TRANSPILE_S_PER_GATE = 2e-4
EMULATED_DM_S_PER_OP = 4e-9  # x 4**n: a density-matrix instruction
EMULATED_SHOT_S_PER_OP = 2.2e-7  # x shots x 2**(n/2): a trajectory's instruction
EMULATED_SAMPLE_OVERHEAD_S = 0.02


def emulated_instructions(qubits: int, two_qubit_gates: int) -> int:
    """Weighted instructions of the QAOA circuit after transpiling to a heavy-hex device (fitted, above)."""
    return 8 + 5 * qubits + 13 * two_qubit_gates


def emulated_sampling_seconds(qubits: int, two_qubit_gates: int, shots: int) -> float:
    """Expected seconds for Aer to sample the QAOA circuit with the emulated device's noise."""
    ops = emulated_instructions(qubits, two_qubit_gates)
    if shots > 2 ** qubits:  # Aer's automatic method: one density matrix for every shot
        return EMULATED_SAMPLE_OVERHEAD_S + ops * 4.0 ** qubits * EMULATED_DM_S_PER_OP
    return EMULATED_SAMPLE_OVERHEAD_S + shots * ops * EMULATED_SHOT_S_PER_OP * 2.0 ** (qubits / 2)


def qpu_qaoa_expected_seconds(qubits: int, two_qubit_gates: int, shots: int = QPU_QAOA_SHOTS,
                              evaluations: int | None = None) -> dict[str, float]:
    """What a QAOA run on the emulated device is expected to take, by part: the angle search as planned
    without a time limit (one layer, ``QAOA_EVALUATIONS[1]`` evaluations: the statevector's measured table
    up to ``QPU_QAOA_STATEVECTOR_MAX_QUBITS``, the closed form's beyond), transpiling, and the noisy
    sampling; ``total`` is their sum."""
    planned = QAOA_EVALUATIONS[1] if evaluations is None else evaluations
    if qubits <= QPU_QAOA_STATEVECTOR_MAX_QUBITS:
        search = qaoa_expected_seconds(qubits, 1, planned)
    else:
        search = planned * qaoa_closed_form_seconds(qubits, two_qubit_gates)
    transpile = QPU_QAOA_TRANSPILE_S + QPU_QAOA_TRANSPILE_S_PER_GATE * two_qubit_gates
    sample = emulated_sampling_seconds(qubits, two_qubit_gates, shots)
    return {"search": search, "transpile": transpile, "sample": sample, "total": search + transpile + sample}


def check_qpu_qaoa(problem: Any, limits: LaneLimits, *, shots: int = QPU_QAOA_SHOTS,
                   device: str | None = None) -> Verdict:
    """QAOA on a device: qubits against the device (a layout needs one physical qubit per variable) and the
    largest encoding the lane builds, shots against the device's, and the circuit's two-qubit gates before routing
    against the device's useful size (``max_two_qubit_gates``, from its error rate and the measured noise
    budget)."""
    if problem.kind not in QAOA_KINDS:
        return Verdict.no(f"unsupported: QAOA does not solve '{problem.kind}'")
    where = f" on {device}" if device else ""
    qubits = qaoa_qubits(problem)
    if limits.max_qubits is not None and qubits > limits.max_qubits:
        return Verdict.no(f"capacity: {qubits} qubits after layout > {limits.max_qubits}{where}")
    if qubits > QPU_QAOA_MAX_QUBITS:
        return Verdict.no(f"capacity: {qubits} qubits > {QPU_QAOA_MAX_QUBITS}, the largest QAOA encoding the qpu "
                          "lane builds")
    if limits.max_shots is not None and shots > limits.max_shots:
        return Verdict.no(f"capacity: {shots} shots > {limits.max_shots}{where}")
    useful = limits.max_two_qubit_gates
    gates = qaoa_two_qubit_gates(problem)
    if useful is not None and gates > useful:
        return Verdict.no(
            f"capacity: QAOA needs {gates} two-qubit gates before routing > {useful}{where}: beyond that "
            f"the device's errors leave noise only (measured on the emulated device: sampled mean energy "
            f"indistinguishable from uniform sampling past {QPU_NOISE_BUDGET:g} / median two-qubit error)")
    if qubits <= QPU_QAOA_STATEVECTOR_MAX_QUBITS:
        seconds = qaoa_expected_seconds(qubits, 1, QAOA_EVALUATIONS[1])
    else:
        seconds = QAOA_EVALUATIONS[1] * qaoa_closed_form_seconds(qubits, gates)
    if seconds > QAOA_MAX_EXPECTED_S:
        return Verdict.no(f"capacity: the QAOA angle search on {qubits} qubits needs ~{math.ceil(seconds)} s > "
                          f"{QAOA_MAX_EXPECTED_S:g} s")
    return Verdict.yes()
