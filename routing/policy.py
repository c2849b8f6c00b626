"""What the policy engine is asked for a submission: its input document (plain values in, no settings)."""

from __future__ import annotations

from typing import Any, Mapping

from solvers.registry import LANES

# Where each qpu provider runs its devices; "local" is the gateway's own hosts (the emulated device and the
# sim and heuristic lanes), which every residency rule of the shipped data admits.
PROVIDER_REGIONS = {"emulated": "local", "ibm": "us", "braket": "us", "http": "unknown"}


def provider_region(provider: str, override: str | None = None) -> str:
    return override or PROVIDER_REGIONS.get(provider, "unknown")


def policy_input(*, tenant: str, scopes: frozenset[str], solver: str, cost_tier: str,
                 metadata: Mapping[str, Any] | None, lane_cost_usd: Mapping[str, float], qpu_provider: str,
                 qpu_region: str, standard_tier_max_usd: float) -> dict[str, Any]:
    """The policy's input (see policy/qgate.rego). Only metadata scalars are passed on."""
    lanes = {lane: {"cost_usd": float(lane_cost_usd.get(lane, 0.0)),
                    "provider": qpu_provider if lane == "qpu" else None,
                    "region": qpu_region if lane == "qpu" else "local"} for lane in LANES}
    meta = {k: v for k, v in (metadata or {}).items() if isinstance(v, (str, int, float, bool))}
    return {"tenant": tenant, "scopes": sorted(scopes),
            "request": {"solver": solver, "cost_tier": cost_tier, "metadata": meta},
            "lanes": lanes, "config": {"standard_tier_max_usd": float(standard_tier_max_usd)}}
