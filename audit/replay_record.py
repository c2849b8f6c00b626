"""What a replay reads from a receipt: the audited fingerprint, budget, solver, provenance and answer.

A receipt's entries are the job's audit events (`audit.receipt` checks their signatures and inclusion
proofs); replay needs the ``job.accepted`` event (fingerprint, budget) and the ``job.succeeded`` one
(solver, provenance, result).
"""

from __future__ import annotations

from typing import Any

from audit.entry import decode_line

MAX_BUDGET_MS = 86_400_000  # a day: above any QGATE_MAX_BUDGET_MS a gateway would run with


def record_from_receipt(receipt: Any) -> dict[str, Any]:
    """``{job_id, fingerprint, budget_ms, solver, provenance, result}`` from a receipt; ValueError when it
    lacks the job's acceptance or success (a failed job has no answer to replay)."""
    if not isinstance(receipt, dict) or not isinstance(receipt.get("entries"), list):
        raise ValueError("not a receipt: needs job_id, checkpoint and an entries list")
    events: dict[str, dict[str, Any]] = {}
    for item in receipt["entries"]:
        try:
            entry = decode_line(str(item["line"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError("a receipt entry is malformed") from None
        if isinstance(entry.get("data"), dict):
            events.setdefault(str(entry.get("type")), entry["data"])
    accepted, succeeded = events.get("job.accepted"), events.get("job.succeeded")
    if accepted is None or succeeded is None:
        raise ValueError("the receipt holds no job.accepted and job.succeeded events: only a job that "
                         "succeeded can be replayed")
    provenance = succeeded.get("provenance") or {}
    record = {"job_id": receipt.get("job_id"),
              "fingerprint": (provenance.get("fingerprint") if isinstance(provenance, dict) else None)
              or accepted.get("fingerprint"),
              "budget_ms": accepted.get("budget_ms"), "solver": succeeded.get("solver") or {},
              "provenance": provenance, "result": succeeded.get("result") or {}}
    problem = _shape_problem(record)
    if problem:
        raise ValueError(f"the receipt's job record is malformed: {problem}")
    return record


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _shape_problem(record: dict[str, Any]) -> str | None:
    """What in ``record`` no job the gateway ran could hold, or None. A receipt checked with ``--key``
    was signed by the gateway; one without may be any file, and replay must refuse it, not trip on it."""
    provenance, solver = record["provenance"], record["solver"]
    if not isinstance(record["fingerprint"], str):
        return "fingerprint: want text"
    if record["budget_ms"] is not None and not _is_int(record["budget_ms"], 1, MAX_BUDGET_MS):
        return f"budget_ms: want an integer from 1 to {MAX_BUDGET_MS}"
    if not isinstance(solver, dict) or any(solver.get(k) is not None and not isinstance(solver[k], str)
                                           for k in ("lane", "id", "version")):
        return "solver: want an object of text lane, id and version"
    if not isinstance(provenance, dict):
        return "provenance: want an object"
    if provenance.get("seed") is not None and not _is_int(provenance["seed"], 0, 2**32 - 1):
        return "provenance.seed: want an integer from 0 to 2**32 - 1"
    if not isinstance(provenance.get("solver_details") or {}, dict):
        return "provenance.solver_details: want an object"
    if not isinstance(record["result"], dict):
        return "result: want an object"
    return None
