"""Ingresses measured side by side on one stack: single submits taking turns between the sides (so a burst
of load on a shared machine falls on all of them), then throughput in alternating windows, reported as
ratios to one side."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.run import percentile, rate

SOLVE = "/api/v1/quantum/solve"


@dataclass
class SideFigures:
    """Submit latencies (ms), throughput windows (submits/s) and non-202 answers, per side."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def p50(self, side: str) -> float:
        return statistics.median(self.latencies[side])

    def p99(self, side: str) -> float:
        return percentile(self.latencies[side], 0.99)

    def per_s(self, side: str) -> float:
        return statistics.mean(self.rates[side])

    def report(self, base: str) -> dict[str, dict[str, float]]:
        """Per side: p50/p99 ms, submits/s, and both as ratios to ``base``."""
        return {side: {"p50_ms": round(self.p50(side), 2), "p99_ms": round(self.p99(side), 2),
                       "per_s": round(self.per_s(side), 1),
                       f"p50_ratio_over_{base}": round(self.p50(side) / self.p50(base), 3),
                       f"per_s_ratio_over_{base}": round(self.per_s(side) / self.per_s(base), 3)}
                for side in self.latencies}


def side_arguments() -> argparse.ArgumentParser:
    """The command line of a side-by-side bench: the arguments of `measure_sides`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--submits", type=int, default=200, help="single-client submits per side and round")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run per side and round")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    return parser


def measure_sides(sides: dict[str, str], headers: dict[str, str], body: dict[str, Any], *, submits: int,
                  seconds: float, threads: int, rounds: int) -> SideFigures:
    """``rounds`` of: ``submits`` single submits per side taking turns, then ``seconds`` of throughput from
    ``threads`` clients per side, one side after the other."""
    figures = SideFigures({side: [] for side in sides}, {side: [] for side in sides}, {side: 0 for side in sides})
    sessions = {side: requests.Session() for side in sides}
    for _ in range(rounds):
        for _ in range(submits):
            for side, url in sides.items():
                started = time.perf_counter()
                reply = sessions[side].post(url + SOLVE, json=body, headers=headers, timeout=30)
                figures.latencies[side].append((time.perf_counter() - started) * 1000)
                figures.errors[side] += reply.status_code != 202
        for side, url in sides.items():
            def submit(session: requests.Session, url: str = url) -> bool:
                return session.post(url + SOLVE, json=body, headers=headers, timeout=30).status_code == 202
            per_s, failed = rate(submit, seconds, threads)
            figures.rates[side].append(per_s)
            figures.errors[side] += failed
    return figures
