"""Offline check of a job's receipt: a signed checkpoint, the job's entries, an inclusion proof each."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Sequence

from audit.entry import decode_line, signature_valid
from audit.keys import public_keys_by_kid
from audit.merkle import leaf_hash, verify_inclusion
from audit.note import NoteError, Verifier, open_note, parse_checkpoint


class ReceiptError(ValueError):
    """The receipt does not prove what it claims; the message says which part failed."""


def verify_receipt(receipt: Any, verifiers: Sequence[Verifier]) -> int:
    """Check everything a receipt claims with nothing but public keys; returns how many entries it proves."""
    if not isinstance(receipt, dict) or not isinstance(receipt.get("entries"), list) or not receipt["entries"]:
        raise ReceiptError("not a receipt: needs job_id, checkpoint and a non-empty entries list")
    try:
        note = open_note(str(receipt.get("checkpoint", "")), list(verifiers))
        checkpoint = parse_checkpoint(note.body)
    except (NoteError, ValueError) as exc:
        raise ReceiptError(f"checkpoint: {exc}") from None
    keys = public_keys_by_kid(verifiers)
    for item in receipt["entries"]:
        _check_entry(item, receipt.get("job_id"), checkpoint, keys)
    return len(receipt["entries"])


def _check_entry(item: Any, job_id: Any, checkpoint: Any, keys: dict[str, Any]) -> None:
    try:
        index, line = int(item["index"]), str(item["line"]).encode()
        proof = [base64.b64decode(h, validate=True) for h in item["proof"]]
        entry = decode_line(line)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ReceiptError("an entry is malformed") from None
    if entry.get("seq") != index:
        raise ReceiptError(f"entry {index}: its seq says {entry.get('seq')!r}")
    if entry.get("job_id") != job_id:
        raise ReceiptError(f"entry {index} belongs to job {entry.get('job_id')!r}, not {job_id!r}")
    if not verify_inclusion(leaf_hash(line), index, checkpoint.size, proof, checkpoint.root_hash):
        raise ReceiptError(f"entry {index}: the inclusion proof does not lead to the checkpoint's root")
    if not signature_valid(entry, keys):
        raise ReceiptError(f"entry {index}: no valid signature by the given keys (kid {entry.get('kid')!r})")
