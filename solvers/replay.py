"""Replay: run a finished job's solver again on its problem, with its seed and recorded search length.

What a replay needs is what a job's provenance records: the problem (whose canonical SHA-256 must equal the
audited fingerprint), the solver's lane, id and version, the seed, and the solver's own counts (QAOA's
planned and used evaluations, PyVRP's iterations). The replayed answer is scored like any answer
(`solvers.objective.score`) and compared with the served one, field for field.

Where identity is not to be expected the report says why, before anyone reads the verdict: a run cut by
the clock (MILP without its proof, annealing interrupted), a physical device (its shots are not
reproducible), no seed, or another solver version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from solvers.objective import score
from solvers.problems import MAX_SHOTS, fingerprint, parse_problem
from solvers.registry import lane_solvers


class FingerprintMismatch(ValueError):
    """The problem given is not the one the job ran: its SHA-256 differs from the audited fingerprint."""


class NotReplayable(ValueError):
    """The record lacks what a replay needs (no answer, unknown solver)."""


@dataclass
class ReplayReport:
    job_id: str | None
    fingerprint: str
    solver: dict[str, Any]
    seed: int | None
    identical: bool
    replayed_result: dict[str, Any]
    original_result: dict[str, Any]
    differences: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "identical": self.identical, "fingerprint": self.fingerprint,
                "solver": self.solver, "seed": self.seed, "differences": self.differences,
                "caveats": self.caveats, "original_result": self.original_result,
                "replayed_result": self.replayed_result}


def check_fingerprint(problem_data: dict[str, Any], expected: str) -> Any:
    """The parsed problem, if its canonical SHA-256 is ``expected``; `FingerprintMismatch` otherwise."""
    problem = parse_problem(problem_data)
    actual = fingerprint(problem)
    if actual != expected:
        raise FingerprintMismatch(f"the problem's fingerprint {actual} is not the audited {expected}: "
                                  "this is not the problem the job ran")
    return problem


def replay(problem_data: dict[str, Any], *, fingerprint_: str, solver: dict[str, Any], provenance: dict[str, Any],
           result: dict[str, Any], time_limit_s: float, adapter: Any = None,
           job_id: str | None = None) -> ReplayReport:
    """Run the job's solver again and compare its scored answer with ``result``.

    ``adapter`` is the qpu lane's device (needed only for a qpu job); ``time_limit_s`` the time the replay
    may take (the job's budget: a search bounded by counts, not the clock, ends at the same point anyway).
    """
    problem = check_fingerprint(problem_data, fingerprint_)
    details = provenance.get("solver_details") or {}
    seed = provenance.get("seed")
    instance = replay_solver(solver, details, adapter)
    caveats = replay_caveats(solver, instance, details, seed)
    solution = instance.solve(problem, time_limit_s=time_limit_s, seed=seed)
    replayed = json.loads(json.dumps(score(problem, solution.result)))
    original = json.loads(json.dumps(result))
    differences = [f"{key}: served {original.get(key)!r}, replayed {replayed.get(key)!r}"
                   for key in sorted(set(original) | set(replayed)) if original.get(key) != replayed.get(key)]
    return ReplayReport(job_id, fingerprint_, solver, seed, not differences, replayed, original,
                        differences, caveats)


def replay_solver(solver: dict[str, Any], details: dict[str, Any], adapter: Any = None) -> Any:
    """A fresh instance of the recorded solver, set to repeat the recorded search length."""
    lane, solver_id = solver.get("lane"), solver.get("id")
    quantum = details.get("quantum") or {}
    options = {"adapter": adapter} if lane == "qpu" and adapter is not None else {}
    try:
        candidates = lane_solvers(str(lane), **options)
    except ValueError as exc:
        raise NotReplayable(str(exc)) from None
    if not isinstance(quantum, dict):
        raise NotReplayable("solver_details.quantum: want an object")
    for candidate in candidates:
        if candidate.id != solver_id:
            continue
        if quantum.get("planned_evaluations") is not None:
            return type(candidate)(**_qaoa_options(candidate, quantum))
        if solver_id == "pyvrp" and details.get("iterations"):
            return type(candidate)(max_iterations=_count(details, "iterations", MAX_COUNTS["iterations"]))
        return candidate
    raise NotReplayable(f"no solver {solver_id!r} on the {lane} lane of this installation")


def _qaoa_options(candidate: Any, quantum: dict[str, Any]) -> dict[str, Any]:
    """The QAOA run of the record: its shots, layers and planned evaluations, and where the clock stopped it."""
    options: dict[str, Any] = {"max_evaluations": _count(quantum, "planned_evaluations"),
                               "shots": _count(quantum, "shots")}
    if quantum.get("stopped_by") == "time":
        options["stop_after_evaluations"] = _count(quantum, "optimizer_evaluations")
    if hasattr(candidate, "adapter"):
        return {"adapter": candidate.adapter, **options}
    return {"reps": _count(quantum, "reps"), **options}


# Far above what any job records (QAOA plans some hundreds of evaluations of 1-3 layers, shots are at most
# a circuit's MAX_SHOTS), far below what would keep a replay running for days: a record beyond them is
# not one the gateway wrote.
MAX_COUNTS = {"planned_evaluations": 100_000, "optimizer_evaluations": 100_000, "shots": MAX_SHOTS, "reps": 32,
              "iterations": 10_000_000}


def _count(record: dict[str, Any], name: str, maximum: int | None = None) -> int:
    """The recorded count ``name``: a positive integer within MAX_COUNTS, or NotReplayable."""
    value, top = record.get(name), maximum or MAX_COUNTS[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise NotReplayable(f"recorded {name} {str(value)[:40]!r}: want an integer from 1 to {top}")
    return value


def replay_caveats(solver: dict[str, Any], instance: Any, details: dict[str, Any], seed: int | None) -> list[str]:
    """Why the replayed answer may differ from the served one, from the record alone."""
    caveats = []
    if seed is None:
        caveats.append("unseeded: the job ran without a seed, so its random choices cannot be repeated")
    if solver.get("version") != instance.version:
        caveats.append(f"solver version differs: the job ran {solver.get('version')}, this installation has "
                       f"{instance.version}")
    quantum = details.get("quantum") or {}
    if quantum.get("stopped_by") == "time":
        caveats.append(f"the QAOA search was cut by the clock after {quantum.get('optimizer_evaluations')} "
                       "evaluations: replayed to the same evaluation, which repeats it exactly")
    if details.get("optimal") is False and details.get("status") != "Optimal":
        caveats.append("cut by the clock before it converged: the solver returned its best answer without a "
                       "proof of optimality, and another run may stop elsewhere")
    if details.get("reads_done") is not None and details.get("num_reads") is not None \
            and details["reads_done"] < details["num_reads"]:
        caveats.append(f"cut by the clock: annealing finished {details['reads_done']} of {details['num_reads']} "
                       "reads, and another run may finish a different number")
    if solver.get("lane") == "qpu":
        backend = details.get("backend") or ""
        if backend.startswith("fake_"):
            caveats.append(f"emulated device {backend}: its noise is simulated with a seeded generator, "
                           "so the same seed draws the same shots")
        else:
            caveats.append(f"a noisy device ({backend or 'unknown'}): its shots are not reproducible, only their "
                           "distribution is; an identical answer is not to be expected")
    return caveats
