"""Audit endpoints: chain verification, a job's entries, checkpoints, keys, proofs, receipts, entry ranges.

Hashes are base64 (standard alphabet). The endpoints read the log's files directly, so they are served
by ingress processes on the host that keeps the log.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import require
from api.errors import ApiError, bad_query
from api.services import services
from audit.chain import AuditPaths
from audit.channel import job_index_key
from audit.checkpoints import CheckpointStore, checkpoint_body
from audit.entry import decode_line
from audit.keys import KeyInfo, Keyring, signer_from_file
from audit.note import parse_checkpoint
from audit.reader import AuditReader
from audit.verify import verify_file
from jobs import model

bp = Blueprint("audit", __name__)
MAX_ENTRIES = 1000
INDEX_PATTERN = re.compile(r"[0-9]{1,15}")
RECEIPT_WAIT_FACTOR = 2.5


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int_arg(name: str) -> int:
    raw = request.args.get(name, "")
    if not INDEX_PATTERN.fullmatch(raw):
        raise bad_query(name, f"query parameter '{name}' must be a non-negative integer of at most 15 digits")
    return int(raw)


def _reader() -> AuditReader:
    path = services().settings.audit_path
    if not path.exists():
        raise ApiError(404, "the audit log has no entries yet")
    return AuditReader(path)


def _checkpoints() -> CheckpointStore:
    return CheckpointStore(AuditPaths(services().settings.audit_path).checkpoints)


def _is_admin() -> bool:
    return "audit:admin" in g.principal.scopes


@bp.get("/api/v1/audit/verify")
@require("audit:read")
def verify() -> Any:
    return jsonify(verify_file(services().settings.audit_path).as_dict())


@bp.get("/api/v1/audit/jobs/<job_id>")
@require("audit:read")
def entries_of_job(job_id: str) -> Any:
    indices, _ = _wait_for_entries(job_id, _counted_events(job_id), checkpointed=False)
    with _reader() as reader:
        entries = [decode_line(reader.line(index)) for index in indices]
    if any(entry.get("tenant") != g.principal.tenant for entry in entries):
        raise ApiError(404, "no audit entries for this job")
    return jsonify({"job_id": job_id, "entries": entries})


@bp.get("/api/v1/audit/checkpoint")
@require("audit:read")
def checkpoint() -> Any:
    note = _checkpoints().latest()
    if note is None:
        raise ApiError(404, "no checkpoint has been cut yet")
    return Response(note, mimetype="text/plain; charset=utf-8")


@bp.get("/api/v1/audit/keys")
@require("audit:read")
def keys() -> Any:
    settings = services().settings
    if settings.audit_key_file:
        signer = signer_from_file(settings.audit_key_file, settings.audit_origin)
        infos = [KeyInfo(signer.kid, signer.name, _b64(signer.public_key), 0.0)]
    else:
        infos = Keyring(settings.audit_keys_dir, settings.audit_origin).keys()
    return jsonify({"keys": [info.as_public() for info in infos]})


@bp.get("/api/v1/audit/proof/inclusion")
@require("audit:read")
def inclusion_proof() -> Any:
    index, size = _int_arg("index"), _int_arg("size")
    with _reader() as reader:
        if size > reader.tree.size or size == 0:
            raise ApiError(404, f"no tree of size {size}: the log holds {reader.tree.size} entries")
        if index >= size:
            raise bad_query("index", f"index {index} is not below size {size}")
        proof = reader.tree.inclusion_proof(index, size)
    return jsonify({"index": index, "size": size, "hashes": [_b64(h) for h in proof]})


@bp.get("/api/v1/audit/proof/consistency")
@require("audit:read")
def consistency_proof() -> Any:
    first, second = _int_arg("first"), _int_arg("second")
    with _reader() as reader:
        if second > reader.tree.size:
            raise ApiError(404, f"no tree of size {second}: the log holds {reader.tree.size} entries")
        if not 0 < first <= second:
            raise bad_query("first", "need 0 < first <= second")
        proof = reader.tree.consistency_proof(first, second)
    return jsonify({"first": first, "second": second, "hashes": [_b64(h) for h in proof]})


@bp.get("/api/v1/audit/entries")
@require("audit:read")
def entries() -> Any:
    start, end = _int_arg("start"), _int_arg("end")
    if end < start or end - start > MAX_ENTRIES:
        raise bad_query("end", f"need start <= end and at most {MAX_ENTRIES} entries per request")
    out = []
    with _reader() as reader:
        for index, line in reader.entries(start, end):
            if _is_admin() or decode_line(line).get("tenant") == g.principal.tenant:
                out.append({"index": index, "line": line.decode()})
    return jsonify({"entries": out})


@bp.get("/api/v1/audit/jobs/<job_id>/receipt")
@require("audit:read")
def receipt(job_id: str) -> Any:
    """Every entry of the job with its inclusion proof to a checkpoint that covers them all."""
    indices, note = _wait_for_entries(job_id, _counted_events(job_id), checkpointed=True)
    checkpoint_ = parse_checkpoint(checkpoint_body(note or ""))
    items = []
    with _reader() as reader:
        for index in indices:
            line = reader.line(index)
            if decode_line(line).get("tenant") != g.principal.tenant:
                raise ApiError(404, "no audit entries for this job")
            proof = reader.tree.inclusion_proof(index, checkpoint_.size)
            items.append({"index": index, "line": line.decode(), "proof": [_b64(h) for h in proof]})
    return jsonify({"job_id": job_id, "checkpoint": note, "entries": items})


def _counted_events(job_id: str) -> int:
    """How many audit events the job record counted; 404 for another tenant's or an unknown job."""
    svc = services()
    if not model.is_job_id(job_id):
        raise ApiError(404, "no audit entries for this job")
    job = svc.jobs.get(job_id)
    known = job is not None or svc.redis.exists(job_index_key(job_id))
    if not known or (job is not None and job.tenant != g.principal.tenant):
        raise ApiError(404, "no audit entries for this job")
    return (job.audit_events or 0) if job else 0


def _wait_for_entries(job_id: str, expected: int, *, checkpointed: bool) -> tuple[list[int], str | None]:
    """The job's log indices once all ``expected`` entries are written (and, if ``checkpointed``, the
    latest checkpoint once it covers them): answers are never partial or cut to a stale checkpoint."""
    svc = services()
    store = _checkpoints()
    deadline = time.monotonic() + svc.settings.checkpoint_seconds * RECEIPT_WAIT_FACTOR + 1
    while True:
        indices = sorted(int(i) for i in svc.redis.smembers(job_index_key(job_id)))
        note = store.latest() if checkpointed else None
        written = bool(indices) and len(indices) >= expected
        covered = not checkpointed or (written and note is not None
                                       and parse_checkpoint(checkpoint_body(note)).size > indices[-1])
        if written and covered:
            return indices, note
        if time.monotonic() > deadline:
            raise ApiError(503, "the job's audit entries are not all written and checkpointed yet; retry shortly",
                           headers={"Retry-After": str(int(svc.settings.checkpoint_seconds) + 1)})
        time.sleep(0.1)
