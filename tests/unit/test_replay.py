"""Replay: the fingerprint check, the solver set to its recorded search, the verdict and its caveats."""

from __future__ import annotations

import json

import fakeredis
import pytest

from audit.replay_record import record_from_receipt
from jobs.store import JobStore, canonical_problem_key
from jobs import model
from solvers.canonical import canonical_json
from solvers.heuristic import ExactQubo
from solvers.objective import score
from solvers.problems import fingerprint, parse_problem
from solvers.qaoa import QaoaSolver
from solvers.replay import FingerprintMismatch, NotReplayable, replay

QUBO = {"kind": "qubo", "n": 5, "terms": [[0, 0, -2], [1, 1, 1], [0, 1, 3], [2, 3, -2], [3, 4, 1.5], [4, 4, -1]]}
TSP = {"kind": "tsp", "locations": [[0, 0], [10, 0], [10, 10], [0, 12]]}


def served(solver, data: dict, seed: int | None, time_limit_s: float = 120.0) -> dict:
    """What a job records when ``solver`` answers ``data``: solver info, provenance and the scored result."""
    problem = parse_problem(data)
    solution = solver.solve(problem, time_limit_s=time_limit_s, seed=seed)
    return {"fingerprint_": fingerprint(problem), "solver": {"lane": solver.lane, "id": solver.id,
                                                            "version": solver.version},
            "provenance": {"seed": seed, "solver_details": solution.details},
            "result": json.loads(json.dumps(score(problem, solution.result)))}


def test_a_sim_qaoa_job_replays_identically() -> None:
    record = served(QaoaSolver(shots=256), TSP, seed=4)
    report = replay(TSP, time_limit_s=120, **record)
    assert report.identical and not report.differences and report.caveats == []


def test_a_qaoa_run_cut_by_the_clock_replays_to_the_same_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    import solvers.qaoa

    ticks = itertools.count()  # a clock that moves 0.05 s per reading: the search is cut at the same evaluation
    monkeypatch.setattr(solvers.qaoa.time, "perf_counter", lambda: next(ticks) * 0.05)
    record = served(QaoaSolver(shots=256), TSP, seed=4, time_limit_s=4.0)
    monkeypatch.undo()
    quantum = record["provenance"]["solver_details"]["quantum"]
    assert quantum["stopped_by"] == "time" and quantum["optimizer_evaluations"] < quantum["planned_evaluations"]
    report = replay(TSP, time_limit_s=120, **record)
    assert report.identical, report.differences
    assert any("cut by the clock" in line for line in report.caveats)


def test_an_exact_heuristic_job_replays_identically_and_an_unseeded_one_says_so() -> None:
    record = served(ExactQubo(), QUBO, seed=None)
    report = replay(QUBO, time_limit_s=5, **record)
    assert report.identical and any(line.startswith("unseeded") for line in report.caveats)


def test_a_different_answer_is_reported_field_by_field() -> None:
    record = served(ExactQubo(), QUBO, seed=1)
    record["result"] = {**record["result"], "energy": record["result"]["energy"] + 1}
    report = replay(QUBO, time_limit_s=5, **record)
    assert not report.identical and report.differences[0].startswith("energy: served")


@pytest.mark.parametrize("tamper", [
    lambda p: {**p, "terms": p["terms"][:-1]},
    lambda p: {**p, "terms": [[0, 0, -2.0001], *p["terms"][1:]]},
    lambda p: {**p, "n": 6},
])
def test_a_tampered_problem_is_refused_before_anything_runs(tamper) -> None:
    record = served(ExactQubo(), QUBO, seed=1)
    with pytest.raises(FingerprintMismatch, match="not the audited"):
        replay(tamper(QUBO), time_limit_s=5, **record)


def test_a_solver_this_installation_lacks_is_not_replayable() -> None:
    record = served(ExactQubo(), QUBO, seed=1)
    record["solver"] = {**record["solver"], "id": "gurobi"}
    with pytest.raises(NotReplayable, match="gurobi"):
        replay(QUBO, time_limit_s=5, **record)


def test_a_real_device_run_is_flagged_not_reproducible() -> None:
    from solvers.replay import replay_caveats

    caveats = replay_caveats({"lane": "qpu", "version": "v"}, type("S", (), {"version": "v"})(),
                             {"backend": "ibm_torino"}, 3)
    assert caveats and "not reproducible" in caveats[0]


def test_admission_keeps_the_canonical_problem_under_its_fingerprint() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = JobStore(redis, ttl_s=600)
    problem = parse_problem(QUBO)
    data = problem.model_dump(mode="json", exclude_none=True)
    job, events = model.new_job(job_id=model.new_job_id(), tenant="t", client_id="c", kind="qubo", budget_ms=1000,
                                request={}, plan=[], fingerprint=fingerprint(problem),
                                cost_estimate={"usd": 0.0, "basis": "x"})
    assert store.create(job, data, events)
    raw = store.canonical_problem(fingerprint(problem))
    assert raw == canonical_json(data)
    import hashlib
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == fingerprint(problem)
    assert 0 < redis.ttl(canonical_problem_key(fingerprint(problem))) <= 600


def test_a_receipt_gives_the_fingerprint_solver_provenance_and_answer() -> None:
    def line(kind: str, data: dict) -> dict:
        return {"index": 0, "proof": [], "line": json.dumps({"type": kind, "job_id": "j", "data": data})}

    receipt = {"job_id": "j", "entries": [
        line("job.accepted", {"fingerprint": "sha256:ab", "budget_ms": 3000}),
        line("job.succeeded", {"solver": {"id": "x"}, "provenance": {"fingerprint": "sha256:ab", "seed": 2},
                               "result": {"bits": [1]}})]}
    record = record_from_receipt(receipt)
    assert record["fingerprint"] == "sha256:ab" and record["budget_ms"] == 3000 and record["result"] == {"bits": [1]}
    with pytest.raises(ValueError, match="only a job that succeeded"):
        record_from_receipt({"job_id": "j", "entries": receipt["entries"][:1]})


def test_a_job_on_the_emulated_device_replays_identically() -> None:
    from solvers.qpu import EmulatedQpu
    from solvers.qpu_qaoa import QpuQaoaSolver

    record = served(QpuQaoaSolver(EmulatedQpu("fake_manila"), shots=128), QUBO, seed=9)
    report = replay(QUBO, time_limit_s=120, adapter=EmulatedQpu("fake_manila"), **record)
    assert report.identical, report.differences
    assert any("emulated device fake_manila" in line for line in report.caveats)
