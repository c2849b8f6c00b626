"""Lane planning: which lanes a job may try, in which order, and why each other lane is skipped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from solvers.base import LaneLimits
from solvers.registry import LANES, static_verdict


@dataclass(frozen=True)
class LaneStatus:
    """What the planner knows of a lane from its workers' heartbeats."""

    alive: bool
    limits: LaneLimits = LaneLimits()


@dataclass(frozen=True)
class PlanStep:
    lane: str
    action: str  # "try" or "skip"
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"lane": self.lane, "action": self.action, "reason": self.reason}


def lane_order(requested: str) -> tuple[str, ...]:
    """The fallback order starting at the requested first lane; ``auto`` starts at the top."""
    if requested == "auto":
        return LANES
    return LANES[LANES.index(requested):]


def plan_lanes(problem: Any, requested: str, scopes: frozenset[str], status: Mapping[str, LaneStatus],
               *, cost_tier: str = "standard", lane_cost_usd: Mapping[str, float] | None = None,
               standard_tier_max_usd: float = 0.0, policy: Any = None) -> list[PlanStep]:
    """Plan the lanes for ``problem``: each lane of the order is tried or skipped with its reason.

    With ``policy`` (a ``policy.engine.Decision``) the policy's reasons take the place of the scope and
    cost-tier rules, at the same points of the order, prefixed ``policy:``."""
    steps: list[PlanStep] = []
    costs = lane_cost_usd or {}
    for lane in lane_order(requested):
        lane_status = status.get(lane, LaneStatus(False))
        if policy is not None:
            reason = _policy_skip_reason(lane, problem, lane_status, policy)
        else:
            reason = _skip_reason(lane, problem, scopes, lane_status, cost_tier, costs.get(lane, 0.0),
                                  standard_tier_max_usd)
        if reason:
            steps.append(PlanStep(lane, "skip", reason))
        else:
            first = not any(s.action == "try" for s in steps)
            steps.append(PlanStep(lane, "try", "first lane" if first else "fallback"))
    return steps


def _skip_reason(lane: str, problem: Any, scopes: frozenset[str], status: LaneStatus, cost_tier: str,
                 cost_usd: float, standard_tier_max_usd: float) -> str | None:
    if f"solver:{lane}" not in scopes:
        return f"scope: the client lacks solver:{lane}"
    verdict = static_verdict(lane, problem, status.limits)
    if not verdict.ok:
        return verdict.reason
    if not status.alive:
        return f"health: no live worker on the {lane} queue"
    if cost_tier == "standard" and cost_usd > standard_tier_max_usd:
        return f"cost tier: ${cost_usd:.2f} estimated exceeds the standard tier's ${standard_tier_max_usd:.2f}"
    return None


def _policy_skip_reason(lane: str, problem: Any, status: LaneStatus, policy: Any) -> str | None:
    access = policy.access.get(lane, ())
    if access:
        return f"policy: {access[0]}"
    verdict = static_verdict(lane, problem, status.limits)
    if not verdict.ok:
        return verdict.reason
    if not status.alive:
        return f"health: no live worker on the {lane} queue"
    budget = policy.budget.get(lane, ())
    if budget:
        return f"policy: {budget[0]}"
    return None
