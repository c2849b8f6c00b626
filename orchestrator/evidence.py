"""A portfolio race as lane evidence: each finished attempt that did not win, against the answer served.

A portfolio job serves its winner's answer; every other attempt that finished (succeeded, failed or timed
out) ran the same problem under the same budget, so it is a comparison like a shadow run's: its feasibility,
its gap on the gateway's recomputed objective, better / equal / worse, its run time and its lane's
estimated cost. Attempts the race cancelled did not finish and say nothing either way; skipped lanes
did not run.

The rows are written by a ``JobStore`` observer in the transaction that ends the job, so they are recorded
exactly once: a conclusion retried after that transaction is refused (the job has ended), and a
transaction that loses a race with another conclusion is retried whole, its queued writes discarded.
They go to the same bounded per-day lists as the shadow comparisons (``source: portfolio``), and one
audit event per job, ``portfolio.compared``, lists them.
"""

from __future__ import annotations

from typing import Any

from audit.channel import emit
from jobs.model import TERMINAL, Job
from orchestrator.portfolio import compare, is_portfolio, relative_gap
from orchestrator.shadow import ENDING, append_row

FINISHED = ("succeeded", "failed", "timeout")


def portfolio_comparisons(job: Job) -> list[dict[str, Any]]:
    """The ended portfolio job's finished non-winning attempts, each against the served answer."""
    state = job.portfolio or {}
    best = state.get("best") or {}
    served = state.get("objective") if job.status == "succeeded" else None
    feasible = state.get("feasible") or {}
    costs = state.get("costs") or {}
    out = []
    for attempt in job.attempts:
        if attempt.outcome not in FINISHED or attempt.n == best.get("n"):
            continue
        ok = attempt.outcome == "succeeded" and bool(feasible.get(str(attempt.n)))
        objective = attempt.objective if ok else None
        out.append({"attempt": attempt.n, "lane": attempt.lane, "kind": job.kind, "outcome": attempt.outcome,
                    "objective": objective, "feasible": ok, "served_lane": best.get("lane"),
                    "served_objective": served, "gap": relative_gap(objective, served),
                    "versus": compare(objective, served), "time_ms": attempt.duration_ms,
                    "cost_usd": float(costs.get(attempt.lane, 0.0))})
    return out


class PortfolioEvidence:
    """Records a portfolio job's comparisons in the transaction that ends it."""

    def __init__(self, history_days: int = 31) -> None:
        self.ttl_s = max(history_days, 1) * 86400 + 86400

    def prepare(self, pipe: Any, before: Job | None, events: list[Any]) -> None:
        return None  # everything needed is in the ending job itself: nothing to read or WATCH

    def observe(self, pipe: Any, before: Job | None, job: Job, events: list[Any], now: float,
                prepared: Any = None) -> None:
        if (before is None or before.status in TERMINAL or job.status not in TERMINAL or not is_portfolio(job)
                or not any(name in ENDING for name, _ in events)):
            return
        compared = portfolio_comparisons(job)
        if not compared:
            return
        for row in compared:
            record = {k: row[k] for k in ("feasible", "versus", "gap", "time_ms", "cost_usd")}
            append_row(pipe, job.tenant, row["lane"], job.kind, {**record, "source": "portfolio"}, now, self.ttl_s)
        emit(pipe, "portfolio.compared", job_id=job.job_id, tenant=job.tenant, status=job.status,
             comparisons=compared)
