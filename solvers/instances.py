"""Instance files an operator has at hand, turned into qgate problems.

TSPLIB and VRPLIB files are read with the ``vrplib`` package; JSON files hold either a bare problem or
a whole solve body. Distances are the file's edge weights (``vrplib`` computes Euclidean ones for
coordinate instances, unrounded). The fleet is the file's VEHICLES field, else unlimited (n - 1): the
``-kN`` in a CVRPLIB name is the minimum number of routes, not a fleet size (X-n101-k25's best-known
solution uses 26 routes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_instance(path: Path) -> dict[str, Any]:
    """A solve body ``{"problem": ...}`` from a .json, .vrp or .tsp file (raises ValueError if unreadable)."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a JSON problem must be an object")
        return data if "problem" in data else {"problem": data}
    import vrplib

    try:
        instance = vrplib.read_instance(str(path))
    except Exception as exc:  # vrplib raises assorted parse errors
        raise ValueError(f"{path}: not a readable TSPLIB/VRPLIB instance ({type(exc).__name__}: {exc})") from None
    return {"problem": problem_from_vrplib(instance), "metadata": {"instance": str(instance.get("name", path.stem))}}


def problem_from_vrplib(instance: dict[str, Any]) -> dict[str, Any]:
    """A tsp or cvrp problem from a parsed instance; the depot becomes node 0."""
    if "edge_weight" not in instance:
        raise ValueError("the instance has no edge weights or coordinates")
    weights = instance["edge_weight"]
    n = len(weights)
    depot = int(instance.get("depot", [0])[0]) if len(instance.get("depot", [])) else 0
    order = [depot] + [i for i in range(n) if i != depot]
    distances = [[float(weights[a][b]) for b in order] for a in order]
    if "demand" not in instance:
        return {"kind": "tsp", "distances": distances}
    demands = [int(instance["demand"][i]) for i in order]
    return {"kind": "cvrp", "distances": distances, "demands": demands,
            "vehicle_capacity": int(instance["capacity"]), "num_vehicles": int(instance.get("vehicles") or n - 1)}
