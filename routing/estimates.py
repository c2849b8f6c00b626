"""Cost estimates per lane, from the qpu price table (plain values from the settings).

Classical and simulator lanes run on the gateway's own workers and cost nothing per job; the qpu lane
costs a price per task plus a price per shot (zero for the emulated device, which is the default): a circuit's
own shots, or the `QPU_QAOA_SHOTS` a qubo, tsp or assignment is sampled with there.
"""

from __future__ import annotations

from typing import Any

from solvers.capability import (
    QAOA_KINDS,
    QPU_QAOA_MAX_QUBITS,
    QPU_QAOA_SHOTS,
    qaoa_qubits,
    qaoa_two_qubit_gates,
    qpu_qaoa_expected_seconds,
)
from solvers.registry import LANES


def lane_costs(problem: Any, price_per_task_usd: float, price_per_shot_usd: float) -> dict[str, float]:
    """Each lane's estimated price for ``problem``: the qpu lane's from its price table, zero elsewhere."""
    shots = getattr(problem, "shots", 0) or (QPU_QAOA_SHOTS if problem.kind in QAOA_KINDS else 0)
    qpu = price_per_task_usd + price_per_shot_usd * shots
    return {lane: (qpu if lane == "qpu" else 0.0) for lane in LANES}


def job_cost_estimate(plan: list[Any], costs: dict[str, float]) -> dict[str, Any]:
    """The worst case over the lanes the job may try, with what it is based on."""
    lanes = [step.lane for step in plan if step.action == "try"]
    if not lanes:
        return {"usd": 0.0, "basis": "no lane to run"}
    usd = max(costs.get(lane, 0.0) for lane in lanes)
    basis = ", ".join(f"{lane} ${costs.get(lane, 0.0):.4f}" for lane in lanes)
    return {"usd": round(usd, 6), "basis": f"worst case over planned lanes: {basis}"}


# What an attempt takes before any sample exists (cold start), for a waiting job's ETA only: planning never
# passes a lane over on these. The heuristic lane runs its solvers to their time limit on larger problems.
# On the qpu lane a QAOA kind has a prior of its own (``qpu_prior_run_s``); the constant is for circuits.
COLD_START_RUN_S = {"qpu": 2.0, "sim": 0.5, "heuristic": 1.0}


def cold_start_run_s(lane: str, prior_s: float | None = None) -> float:
    """The job's own prior on ``lane`` when it has one, else the lane's constant."""
    return prior_s if prior_s is not None else COLD_START_RUN_S.get(lane, 1.0)


def qpu_prior_run_s(problem: Any, provider: str) -> float | None:
    """What a QAOA run of ``problem`` on the emulated device should take (angle search from the measured
    table, transpiling, noisy sampling: ``solvers.capability.qpu_qaoa_expected_seconds``); None for
    circuits, for problems past the largest encoding the lane builds (it refuses them) and for real
    providers, whose time is their queue and device, not this machine's simulation."""
    if provider != "emulated" or problem.kind not in QAOA_KINDS:
        return None
    qubits = qaoa_qubits(problem)
    if qubits > QPU_QAOA_MAX_QUBITS:
        return None
    return round(qpu_qaoa_expected_seconds(qubits, qaoa_two_qubit_gates(problem))["total"], 3)
