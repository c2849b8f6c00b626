"""Where an emulated device's errors leave noise only, for QAOA on the qpu lane.

For random QUBOs of growing size and density (and the tsp encodings the lane meets), the angles are
searched on the noiseless statevector, the circuit is transpiled to the device and sampled with its noise
model (`solvers.qpu_qaoa` end to end). Per circuit it prints the two-qubit gates before routing (what the
planner counts), after transpiling, and how far the sampled mean energy lies below uniform sampling's mean:

- ``z``: in standard errors of a uniform sample's mean (``std / sqrt(shots)``); below 2 the device's samples
  are indistinguishable from uniform guessing;
- ``kept``: the share of the noiseless gain (uniform mean - QAOA expectation) the device kept.

The summary gives, per device, the smallest size (two-qubit gates before routing) from which every
circuit at or beyond it had ``z < 2``, and that size times the device's median two-qubit error: the noise
budget `solvers.capability.QPU_NOISE_BUDGET` is set from it.

Usage: python -m bench.qpu_depth [--devices fake_guadalupe] [--shots 1024] [--seed 7] [--max-reps 24]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from solvers.base import LaneLimits
from solvers.problems import parse_problem
from solvers.qpu import EmulatedQpu
from solvers.qpu_qaoa import QpuQaoaSolver

Z_NOISE = 2.0


def random_qubo(n: int, density: float, rng: np.random.Generator) -> dict[str, Any]:
    terms = [[i, i, float(rng.integers(-5, 6))] for i in range(n)]
    terms += [[i, j, float(rng.integers(-5, 6) or 1)] for i in range(n) for j in range(i + 1, n)
              if rng.random() < density]
    return {"kind": "qubo", "n": n, "terms": terms}


def tsp(nodes: int, rng: np.random.Generator) -> dict[str, Any]:
    return {"kind": "tsp", "locations": (rng.random((nodes, 2)) * 100).tolist()}


def measure(solver: QpuQaoaSolver, data: dict[str, Any], seed: int) -> dict[str, Any]:
    problem = parse_problem(data)
    solution = solver.solve(problem, time_limit_s=60.0, seed=seed)
    q = solution.details["quantum"]
    shots = q["shots"]
    from solvers.encodings import encode, energy_vector
    energies = energy_vector(encode(problem).qubo)
    std = float(energies.std())
    gain = q["uniform_mean_energy"] - q["expected_energy"]
    sampled_gain = q["uniform_mean_energy"] - q["mean_raw_energy"]
    return {
        "kind": problem.kind, "qubits": solution.details["qubits"],
        "reps": q["reps"],
        "logical_2q": len(np.nonzero(encode(problem).qubo.quadratic)[0]) * q["reps"],
        "transpiled_2q": q["two_qubit_gates"], "depth": q["transpiled_depth"],
        "z": round(sampled_gain / (std / math.sqrt(shots)), 2) if std else 0.0,
        "kept": round(sampled_gain / gain, 3) if gain else 0.0,
        "feasible_share": q["feasible_share"],
    }


def run(devices: list[str], shots: int, seed: int, max_reps: int) -> dict[str, Any]:
    """Per device: random QUBOs at one layer, then one dense 8-variable QUBO with 1..max_reps layers (each
    layer's angles searched on the statevector), so the circuit grows until the device's noise wins."""
    rng = np.random.default_rng(seed)
    cases = [(random_qubo(n, density, rng), 1) for n in (6, 8, 10) for density in (0.3, 0.7, 1.0)]
    cases += [(tsp(4, rng), 1)]
    deep = random_qubo(8, 1.0, rng)
    cases += [(deep, reps) for reps in range(2, max_reps + 1)]
    report: dict[str, Any] = {}
    for device in devices:
        adapter = EmulatedQpu(device, max_depth=100_000)
        adapter.median_two_qubit_error = lambda: None  # type: ignore[method-assign]  # measure past the limit
        solver = QpuQaoaSolver(adapter, shots=shots)
        rows = []
        for data, reps in cases:
            solver.angles.reps = reps
            if solver.can_solve(parse_problem(data), LaneLimits()).ok:
                started = time.perf_counter()
                row = measure(solver, data, seed)
                row["seconds"] = round(time.perf_counter() - started, 2)
                rows.append(row)
                print(json.dumps({"device": device, **row}), flush=True)
        rows.sort(key=lambda r: r["logical_2q"])
        noise_from = next((r["logical_2q"] for i, r in enumerate(rows)
                           if all(x["z"] < Z_NOISE for x in rows[i:])), None)
        report[device] = {"median_2q_error": EmulatedQpu(device).median_two_qubit_error(),
                          "noise_only_from_logical_2q": noise_from, "circuits": len(rows)}
        if noise_from:
            report[device]["noise_budget"] = round(noise_from * report[device]["median_2q_error"], 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="fake_guadalupe")
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-reps", type=int, default=24)
    args = parser.parse_args()
    print(json.dumps(run(args.devices.split(","), args.shots, args.seed, args.max_reps), indent=2))


if __name__ == "__main__":
    main()
