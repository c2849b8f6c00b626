"""Problems used across the integration tests."""

import math
import random

from solvers.circuits import BELL, GHZ3



def tsp(n: int = 12, seed: int = 1) -> dict:
    rng = random.Random(seed)
    return {"kind": "tsp", "locations": [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(n)]}


def cvrp(n: int = 15, seed: int = 2) -> dict:
    rng = random.Random(seed)
    return {"kind": "cvrp", "locations": [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(n)],
            "demands": [0] + [rng.randint(1, 5) for _ in range(n - 1)], "vehicle_capacity": 15,
            "num_vehicles": 5}


def assignment() -> dict:
    return {"kind": "assignment", "costs": [[4, 1, 3], [2, 0, 5], [3, 2, 2], [1, 4, 4]],
            "weights": [2, 2, 3, 1], "capacities": [3, 4, 3]}


def circuit(qasm: str = BELL, shots: int = 500) -> dict:
    return {"kind": "circuit", "qasm": qasm, "shots": shots}


def tour_cost(locations: list, tour: list) -> float:
    closed = tour + tour[:1]
    return sum(math.dist(locations[a], locations[b]) for a, b in zip(closed, closed[1:]))
