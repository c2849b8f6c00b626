"""The qpu lane's prior for QAOA runs against measured runs on an emulated device.

For each problem it prints the prior (`routing.estimates.qpu_prior_run_s`, by part: angle search,
transpile, sampling) and the measured run of `solvers.qpu_qaoa.QpuQaoaSolver.solve` (wall and CPU seconds,
median of ``--repeat`` runs, in a warm process as a worker is, after one warm-up run), with the ratio
measured / prior. The problems: dense random QUBOs (every pair coupled), chain QUBOs, and the 4-node tsp.

Usage: python -m bench.qpu_estimate [--device fake_guadalupe] [--repeat 3] [--sizes d6 d9 c12 d12 t4]
  (dN: dense QUBO on N variables, cN: chain QUBO, tN: tsp on N nodes)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from routing.estimates import qpu_prior_run_s
from solvers.capability import qaoa_qubits, qaoa_two_qubit_gates, qpu_qaoa_expected_seconds
from solvers.problems import parse_problem
from solvers.qpu import EmulatedQpu
from solvers.qpu_qaoa import QpuQaoaSolver


def problem_of(spec: str) -> Any:
    shape, n = spec[0], int(spec[1:])
    rng = np.random.default_rng(7)
    if shape == "d":
        terms = [[i, j, float(rng.integers(-5, 6) or 1)] for i in range(n) for j in range(i, n)]
        return parse_problem({"kind": "qubo", "n": n, "terms": terms})
    if shape == "c":
        terms = [[i, i, -1.0] for i in range(n)] + [[i, i + 1, 2.0] for i in range(n - 1)]
        return parse_problem({"kind": "qubo", "n": n, "terms": terms})
    return parse_problem({"kind": "tsp", "locations": rng.integers(0, 100, size=(n, 2)).tolist()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="fake_guadalupe")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["d6", "d9", "c12", "d12", "t4"])
    args = parser.parse_args()
    solver = QpuQaoaSolver(EmulatedQpu(args.device))
    solver.solve(problem_of("d3"), time_limit_s=60, seed=1)  # warm: imports, device, noise model
    for spec in args.sizes:
        problem = problem_of(spec)
        qubits, gates = qaoa_qubits(problem), qaoa_two_qubit_gates(problem)
        parts = qpu_qaoa_expected_seconds(qubits, gates)
        walls, cpus = [], []
        for run in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            solution = solver.solve(problem, time_limit_s=300, seed=run + 1)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        prior = qpu_prior_run_s(problem, "emulated")
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(json.dumps({"problem": spec, "device": args.device, "qubits": qubits, "rzz": gates,
                          "evaluations": solution.details["quantum"].get("optimizer_evaluations"),
                          "prior_s": prior, "prior_parts": {k: round(v, 3) for k, v in parts.items()},
                          "measured_wall_s": round(wall, 3), "measured_cpu_s": round(cpu, 3),
                          "runs_wall_s": [round(w, 3) for w in walls],
                          "ratio_wall": round(wall / prior, 2) if prior else None}), flush=True)


if __name__ == "__main__":
    main()
