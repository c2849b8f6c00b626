"""What a replay reads from a receipt: the audited fingerprint, budget, solver, provenance and answer.

A receipt's entries are the job's audit events (`audit.receipt` checks their signatures and inclusion
proofs); replay needs the ``job.accepted`` event (fingerprint, budget) and the ``job.succeeded`` one
(solver, provenance, result).
"""

from __future__ import annotations

from typing import Any

from audit.entry import decode_line


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
    return {"job_id": receipt.get("job_id"), "fingerprint": provenance.get("fingerprint") or accepted.get("fingerprint"),
            "budget_ms": accepted.get("budget_ms"), "solver": succeeded.get("solver") or {},
            "provenance": provenance, "result": succeeded.get("result") or {}}
