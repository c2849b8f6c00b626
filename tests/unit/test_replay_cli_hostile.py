"""`qgate replay --problem FILE --receipt FILE` with hostile files: refused with exit 2 and one clear line.

Without ``--key`` a receipt is whatever file an auditor was handed. Exit 1 means "the answer DIFFERS",
so a file that cannot be replayed must never end in exit 1 (nor in a traceback, nor in a run that does
not end): deep nesting, wrong types in the record, counts no job ever ran (10**15 QAOA evaluations),
huge numbers, a problem that is not the audited one, a problem of a million nodes.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from solvers.heuristic import ExactQubo
from solvers.objective import score
from solvers.problems import fingerprint, parse_problem

ROOT = Path(__file__).parents[2]
QUBO = {"kind": "qubo", "n": 4, "terms": [[0, 0, -2], [1, 1, 1], [0, 1, 3], [2, 3, -2]]}


def _receipt() -> dict[str, Any]:
    """A receipt of a job ExactQubo answered, as GET /api/v1/audit/jobs/<id>/receipt shapes it."""
    problem = parse_problem(QUBO)
    solver = ExactQubo()
    solution = solver.solve(problem, time_limit_s=5, seed=3)
    print_ = fingerprint(problem)
    accepted = {"type": "job.accepted", "job_id": "j1", "data": {"fingerprint": print_, "budget_ms": 5000}}
    succeeded = {"type": "job.succeeded", "job_id": "j1", "data": {
        "solver": {"lane": solver.lane, "id": solver.id, "version": solver.version},
        "provenance": {"fingerprint": print_, "seed": 3, "solver_details": solution.details},
        "result": json.loads(json.dumps(score(problem, solution.result)))}}
    return {"job_id": "j1", "checkpoint": "", "entries": [{"line": json.dumps(accepted)}, {"line": json.dumps(succeeded)}]}


def _succeeded(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], Any]:
    def mutate(receipt: dict[str, Any]) -> dict[str, Any]:
        entry = json.loads(receipt["entries"][1]["line"])
        change(entry["data"])
        receipt["entries"][1]["line"] = json.dumps(entry)
        return receipt
    return mutate


def _accepted(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], Any]:
    def mutate(receipt: dict[str, Any]) -> dict[str, Any]:
        entry = json.loads(receipt["entries"][0]["line"])
        change(entry["data"])
        receipt["entries"][0]["line"] = json.dumps(entry)
        return receipt
    return mutate


DEEP = "[" * 100_000 + "]" * 100_000
RECEIPTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "receipt-nested-100k": lambda r: DEEP,
    "solver-a-string": _succeeded(lambda d: d.update(solver="heuristic")),
    "provenance-a-list": _succeeded(lambda d: d.update(provenance=[1])),
    "solver-details-a-list": _succeeded(lambda d: d["provenance"].update(solver_details=[1])),
    "result-a-list": _succeeded(lambda d: d.update(result=[1, "x"])),
    "seed-a-string": _succeeded(lambda d: d["provenance"].update(seed="7")),
    "seed-2**80": _succeeded(lambda d: d["provenance"].update(seed=2**80)),
    "budget-a-string": _accepted(lambda d: d.update(budget_ms="5000")),
    "budget-10**30": _accepted(lambda d: d.update(budget_ms=10**30)),
    "qaoa-counts-no-job-ran": _succeeded(lambda d: d.update(
        solver={"lane": "sim", "id": "qaoa-aer", "version": "x"},
        provenance={**d["provenance"], "solver_details": {"quantum": {
            "planned_evaluations": 10**15, "shots": 10**12, "reps": 10**6}}})),
    "pyvrp-iterations-10**15": _succeeded(lambda d: d.update(
        solver={"lane": "heuristic", "id": "pyvrp", "version": "x"},
        provenance={**d["provenance"], "solver_details": {"iterations": 10**15}})),
}
PROBLEMS: dict[str, Any] = {
    "problem-nested-100k": DEEP,
    "problem-not-the-audited-one": {**QUBO, "n": 5},
    "problem-int-of-5000-digits": '{"kind": "qubo", "n": 1' + "0" * 5000 + ', "terms": []}',
    "problem-a-list": [QUBO],
    "problem-a-million-nodes": {"kind": "tsp", "locations": [[i, i] for i in range(1_000_000)]},
}


def _replay(tmp_path: Path, receipt: Any, problem: Any) -> subprocess.CompletedProcess:
    (tmp_path / "receipt.json").write_text(receipt if isinstance(receipt, str) else json.dumps(receipt))
    (tmp_path / "problem.json").write_text(problem if isinstance(problem, str) else json.dumps(problem))
    return subprocess.run([sys.executable, "-m", "qgate_cli", "replay", "--problem", str(tmp_path / "problem.json"),
                           "--receipt", str(tmp_path / "receipt.json"), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def _assert_refused(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout[-300:], done.stderr[-500:])
    assert "Traceback" not in done.stderr and done.stderr.startswith("qgate: replay refused: ")
    assert json.loads(done.stdout.strip().splitlines()[-1])["refused"]


def test_the_genuine_receipt_replays_identically(tmp_path: Path) -> None:
    done = _replay(tmp_path, _receipt(), QUBO)
    assert done.returncode == 0, done.stderr[-500:]
    assert json.loads(done.stdout)["identical"] is True


@pytest.mark.parametrize("case", sorted(RECEIPTS))
def test_a_hostile_receipt_is_refused(tmp_path: Path, case: str) -> None:
    _assert_refused(_replay(tmp_path, RECEIPTS[case](copy.deepcopy(_receipt())), QUBO))


@pytest.mark.parametrize("case", sorted(PROBLEMS))
def test_a_hostile_problem_is_refused(tmp_path: Path, case: str) -> None:
    _assert_refused(_replay(tmp_path, _receipt(), PROBLEMS[case]))


def test_a_sync_path_qaoa_job_replays_from_its_receipt(tmp_path: Path) -> None:
    """A job of the sync fast path (budget 800 ms) answered by QAOA: its search is fixed by the recorded
    counts, so the replay repeats it however long a cold process takes to set the simulator up."""
    from solvers.qaoa import QaoaSolver

    problem = parse_problem(QUBO)
    solver = QaoaSolver(shots=256)
    solution = solver.solve(problem, time_limit_s=5, seed=4)
    receipt = _receipt()
    accepted, succeeded = (json.loads(e["line"]) for e in receipt["entries"])
    accepted["data"]["budget_ms"] = 800
    succeeded["data"].update(solver={"lane": solver.lane, "id": solver.id, "version": solver.version},
                             provenance={"fingerprint": fingerprint(problem), "seed": 4,
                                         "solver_details": solution.details},
                             result=json.loads(json.dumps(score(problem, solution.result))))
    receipt["entries"] = [{"line": json.dumps(accepted)}, {"line": json.dumps(succeeded)}]
    done = _replay(tmp_path, receipt, QUBO)
    assert done.returncode == 0, (done.returncode, done.stdout[-300:], done.stderr[-300:])
    assert json.loads(done.stdout)["identical"] is True


def test_verify_receipt_says_a_deeply_nested_file_does_not_verify(tmp_path: Path) -> None:
    (tmp_path / "receipt.json").write_text(DEEP)
    done = subprocess.run([sys.executable, "-m", "qgate_cli", "audit", "verify-receipt", str(tmp_path / "receipt.json"),
                           "--key", "qgate.local/audit+abcd1234+" + "A" * 43 + "="],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and done.stderr.startswith("qgate: receipt does NOT verify: "), done.stderr[-300:]
