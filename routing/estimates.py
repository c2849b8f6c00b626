"""Cost estimates per lane, from the price table in the settings.

Classical and simulator lanes run on the gateway's own workers and cost nothing per job; the qpu lane
costs a price per task plus a price per shot (zero for the emulated device, which is the default).
"""

from __future__ import annotations

from typing import Any

from settings import LANES, Settings


def lane_costs(problem: Any, settings: Settings) -> dict[str, float]:
    shots = getattr(problem, "shots", 0) or 0
    qpu = settings.qpu_price_per_task_usd + settings.qpu_price_per_shot_usd * shots
    return {lane: (qpu if lane == "qpu" else 0.0) for lane in LANES}


def job_cost_estimate(plan: list[Any], costs: dict[str, float]) -> dict[str, Any]:
    """The worst case over the lanes the job may try, with what it is based on."""
    lanes = [step.lane for step in plan if step.action == "try"]
    if not lanes:
        return {"usd": 0.0, "basis": "no lane to run"}
    usd = max(costs.get(lane, 0.0) for lane in lanes)
    basis = ", ".join(f"{lane} ${costs.get(lane, 0.0):.4f}" for lane in lanes)
    return {"usd": round(usd, 6), "basis": f"worst case over planned lanes: {basis}"}
