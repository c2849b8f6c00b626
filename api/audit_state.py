"""The audit log's state for the console: size, latest checkpoint, writer lag, keys, a job's entries.

Everything is read from the log's own files and two O(1) Redis calls on the event stream (``XLEN`` and
the writer group's pending count), so the page costs the same at a million entries as at ten.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from api.services import services
from audit.chain import AuditPaths
from audit.channel import GROUP, STREAM, job_index_key
from audit.checkpoints import CheckpointStore, checkpoint_body
from audit.entry import decode_line
from audit.keys import KeyInfo, Keyring, signer_from_file
from audit.note import parse_checkpoint
from audit.reader import AuditReader

MAX_JOB_ENTRIES = 200


@dataclass
class AuditState:
    log_bytes: int | None = None
    entries: int | None = None
    checkpoint_size: int | None = None
    checkpoint_age_s: float | None = None
    checkpoint_kid: str | None = None
    checkpoint_count: int = 0
    stream_length: int | None = None
    pending: int | None = None  # delivered to the writer, not yet acknowledged (written)
    undelivered: int | None = None  # not yet read by the writer (the group's lag)
    keys: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _keys() -> list[dict[str, Any]]:
    settings = services().settings
    if settings.audit_key_file:
        signer = signer_from_file(settings.audit_key_file, settings.audit_origin)
        return [KeyInfo(signer.kid, signer.name, base64.b64encode(signer.public_key).decode(), 0.0).as_public()]
    return [info.as_public() for info in Keyring(settings.audit_keys_dir, settings.audit_origin).keys()]


def audit_state() -> AuditState:
    settings, client = services().settings, services().redis
    state = AuditState()
    path = settings.audit_path
    if path.exists():
        state.log_bytes = path.stat().st_size
        try:
            with AuditReader(path) as reader:
                state.entries = reader.size()
        except Exception as exc:  # a page, not a verifier: say what could not be read
            state.problems.append(f"log index unreadable: {type(exc).__name__}")
    store = CheckpointStore(AuditPaths(path).checkpoints)
    notes = store.all()
    state.checkpoint_count = len(notes)
    if notes:
        latest = notes[-1]
        state.checkpoint_kid = latest.stem.split("-", 1)[1] if "-" in latest.stem else None
        state.checkpoint_age_s = max(0.0, time.time() - latest.stat().st_mtime)
        try:
            state.checkpoint_size = parse_checkpoint(checkpoint_body(latest.read_text())).size
        except Exception as exc:
            state.problems.append(f"latest checkpoint unreadable: {type(exc).__name__}")
    try:
        state.stream_length = client.xlen(STREAM)
        groups = {g["name"]: g for g in client.xinfo_groups(STREAM)} if state.stream_length is not None else {}
        group = groups.get(GROUP)
        state.pending = int(group["pending"]) if group else None
        if group and group.get("lag") is not None:
            state.undelivered = int(group["lag"])
    except Exception as exc:  # no stream yet (nothing emitted) is not an error
        if "no such key" not in str(exc).lower():
            state.problems.append(f"audit stream unreadable: {type(exc).__name__}")
    try:
        state.keys = _keys()
    except Exception as exc:
        state.problems.append(f"keys unreadable: {type(exc).__name__}")
    return state


def job_audit_entries(job_id: str) -> list[dict[str, Any]]:
    """The job's entries already in the log (the writer indexes them by job), oldest first."""
    path = services().settings.audit_path
    indices = sorted(int(i) for i in services().redis.smembers(job_index_key(job_id)))[:MAX_JOB_ENTRIES]
    if not indices or not path.exists():
        return []
    out = []
    with AuditReader(path) as reader:
        for index in indices:
            try:
                entry = decode_line(reader.line(index))
            except Exception:
                continue
            out.append({"index": index, **entry})
    return out
