"""Cost estimates per lane, from the qpu price table (plain values from the settings).

Classical and simulator lanes run on the gateway's own workers and cost nothing per job; the qpu lane
costs a price per task plus a price per shot (zero for the emulated device, which is the default): a circuit's
own shots, or the `QPU_QAOA_SHOTS` a qubo, tsp or assignment is sampled with there.
"""

from __future__ import annotations

from typing import Any

from solvers.capability import QAOA_KINDS, QPU_QAOA_SHOTS
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
# passes a lane over on these. The emulated QPU transpiles and simulates noise; the heuristic lane runs
# its solvers to their time limit on larger problems.
COLD_START_RUN_S = {"qpu": 2.0, "sim": 0.5, "heuristic": 1.0}


def cold_start_run_s(lane: str) -> float:
    return COLD_START_RUN_S.get(lane, 1.0)
