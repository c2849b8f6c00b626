"""Signed entries, checkpoints and receipts: what an outsider can check, and every tampering it catches."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.chain import AuditChain
from audit.checkpoints import CheckpointStore, checkpoint_body, sign_checkpoint
from audit.entry import encode_line, entry_hash, make_entry
from audit.keys import Ed25519Signer, Keyring
from audit.merkle import compute_root, leaf_hash
from audit.note import Checkpoint, format_vkey, open_note, parse_checkpoint, parse_vkey
from audit.receipt import ReceiptError, verify_receipt
from audit.verify import verify_lines

ORIGIN = "qgate.test/audit"


def _events(start: int, n: int, job: str = "j") -> list[tuple[str, dict]]:
    return [(f"{1000 + i}-0", {"type": "job.accepted", "job_id": f"{job}{i % 3}", "tenant": "acme",
                               "data": {"i": i}}) for i in range(start, start + n)]


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys", ORIGIN)


@pytest.fixture
def written(tmp_path: Path, keyring: Keyring):
    """A log of 20 signed entries with checkpoints at 8 and 20."""
    signer = keyring.active()
    chain = AuditChain(tmp_path / "audit" / "audit.log", signer)
    store = CheckpointStore(chain.paths.checkpoints)
    chain.append_batch(_events(0, 8))
    store.save(8, signer.kid, sign_checkpoint(Checkpoint(ORIGIN, 8, chain.tree.root(8), []), signer))
    old_copy = chain.paths.log.read_bytes()
    chain.append_batch(_events(8, 12))
    store.save(20, signer.kid, sign_checkpoint(Checkpoint(ORIGIN, 20, chain.tree.root(20), []), signer))
    yield chain, store, signer, old_copy
    chain.close()


def _lines(chain: AuditChain) -> list[bytes]:
    return chain.paths.log.read_bytes().splitlines(keepends=True)


def _keys(keyring: Keyring) -> dict:
    return {info.kid: info.verifier() for info in keyring.keys()}


def _checkpoints(store: CheckpointStore, keyring: Keyring) -> list[Checkpoint]:
    verifiers = [parse_vkey(k.as_public()["vkey"]) for k in keyring.keys()]
    return [parse_checkpoint(open_note(p.read_text(), verifiers).body) for p in store.all()]


def test_tree_root_is_the_rfc6962_root_of_the_lines(written) -> None:
    chain, *_ = written
    assert chain.tree.root(20) == compute_root([line[:-1] for line in _lines(chain)])


def test_intact_log_verifies_with_signatures_and_checkpoints(written, keyring) -> None:
    chain, store, *_ = written
    result = verify_lines(_lines(chain), _keys(keyring), _checkpoints(store, keyring))
    assert result.valid and result.entries == 20


def _recomputed(lines: list[bytes], change_at: int) -> list[bytes]:
    """A forger's full rewrite: one entry changed and every hash after it recomputed (no signing key)."""
    out, prev = [], None
    for i, raw in enumerate(lines):
        entry = json.loads(raw)
        if prev is not None:
            entry["prev"] = prev
        if i == change_at:
            entry["data"] = {"i": -1}
        entry["hash"] = entry_hash(entry)
        prev = entry["hash"]
        out.append(encode_line(entry))
    return out


def _tampered(lines: list[bytes], old_copy: bytes) -> dict[str, list[bytes]]:
    edited = json.loads(lines[5])
    edited["tenant"] = "evil"
    return {
        "edit": lines[:5] + [encode_line(edited)] + lines[6:],
        "delete": lines[:5] + lines[6:],
        "reorder": lines[:5] + [lines[6], lines[5]] + lines[7:],
        "insert": lines[:5] + [lines[2]] + lines[5:],
        "duplicate": lines[:6] + [lines[5]] + lines[6:],
        "truncate below a checkpoint": lines[:15],
        "rollback to an older copy": old_copy.splitlines(keepends=True),
        "full rewrite with recomputed hashes": _recomputed(lines, 3),
    }


@pytest.mark.parametrize("case", ["edit", "delete", "reorder", "insert", "duplicate", "truncate below a checkpoint",
                                  "rollback to an older copy", "full rewrite with recomputed hashes"])
def test_every_tampering_is_detected_by_the_checkpoints_alone(written, keyring, case) -> None:
    chain, store, _, old_copy = written
    lines = _tampered(_lines(chain), old_copy)[case]
    result = verify_lines(lines, None, _checkpoints(store, keyring))
    assert not result.valid, case
    assert result.reason


def test_full_rewrite_is_also_caught_by_the_signatures(written, keyring) -> None:
    chain, *_ = written
    result = verify_lines(_recomputed(_lines(chain), 3), _keys(keyring))
    assert not result.valid and result.first_bad_seq == 3 and "signature" in result.reason


def test_rotation_keeps_old_checkpoints_and_entries_valid(written, keyring) -> None:
    chain, store, old_signer, _ = written
    new_signer = keyring.rotate()
    assert new_signer.kid != old_signer.kid
    chain.signer = new_signer
    chain.append_batch(_events(20, 5))
    store.save(25, new_signer.kid, sign_checkpoint(Checkpoint(ORIGIN, 25, chain.tree.root(25), []), new_signer))
    infos = {k.kid: k for k in keyring.keys()}
    assert infos[old_signer.kid].not_after is not None and infos[new_signer.kid].not_after is None
    result = verify_lines(_lines(chain), _keys(keyring), _checkpoints(store, keyring))
    assert result.valid and result.entries == 25
    old_only = [parse_vkey(infos[old_signer.kid].as_public()["vkey"])]
    assert parse_checkpoint(open_note(store.all()[0].read_text(), old_only).body).size == 8


def _receipt(chain: AuditChain, store: CheckpointStore, job_id: str) -> dict:
    note = (store.directory / "latest").read_text()
    size = parse_checkpoint(checkpoint_body(note)).size
    items = []
    for i in range(size):
        line = chain.line(i)
        if json.loads(line)["job_id"] == job_id:
            proof = [base64.b64encode(h).decode() for h in chain.tree.inclusion_proof(i, size)]
            items.append({"index": i, "line": line.decode(), "proof": proof})
    return {"job_id": job_id, "checkpoint": note, "entries": items}


def test_receipt_verifies_offline_and_fails_after_any_change(written, keyring) -> None:
    chain, store, signer, _ = written
    vkeys = [parse_vkey(k.as_public()["vkey"]) for k in keyring.keys()]
    receipt = _receipt(chain, store, "j1")
    assert verify_receipt(receipt, vkeys) == len(receipt["entries"]) > 3

    def changed(mutate) -> dict:
        copy = json.loads(json.dumps(receipt))
        mutate(copy)
        return copy

    def flip_proof(r: dict) -> None:
        h = bytearray(base64.b64decode(r["entries"][0]["proof"][0]))
        h[0] ^= 1
        r["entries"][0]["proof"][0] = base64.b64encode(bytes(h)).decode()

    cases = {
        "line": lambda r: r["entries"][1].update(line=r["entries"][1]["line"].replace('"acme"', '"evil"')),
        "proof": flip_proof,
        "dropped proof hash": lambda r: r["entries"][0]["proof"].pop(),
        "index": lambda r: r["entries"][0].update(index=r["entries"][0]["index"] + 1),
        "job": lambda r: r.update(job_id="j2"),
        "checkpoint body": lambda r: r.update(checkpoint=r["checkpoint"].replace("\n20\n", "\n21\n")),
        "foreign entry": lambda r: r["entries"].append(_receipt(chain, store, "j2")["entries"][0]),
    }
    for name, mutate in cases.items():
        with pytest.raises(ReceiptError):
            verify_receipt(changed(mutate), vkeys)
    stranger = Ed25519Signer(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, [parse_vkey(format_vkey(ORIGIN, stranger.public_key))])


def test_reopening_repairs_index_and_tree_from_the_log(tmp_path: Path, keyring) -> None:
    path = tmp_path / "audit" / "audit.log"
    chain = AuditChain(path, keyring.active())
    chain.append_batch(_events(0, 10))
    root = chain.tree.root(10)
    chain.close()
    shutil.rmtree(path.parent / "tree")
    (path.parent / "index" / "offsets.bin").write_bytes(b"\x00" * 21)
    with path.open("ab") as handle:
        handle.write(b'{"seq":10,"torn')
    chain = AuditChain(path, keyring.active())
    assert chain.size == 10 and chain.tree.root(10) == root and chain.repaired_bytes
    assert chain.line(9) == _lines(chain)[9][:-1]
    assert chain.tree.inclusion_proof(3, 10)
    chain.close()


def test_entries_carry_kid_and_signature(written, keyring) -> None:
    chain, _, signer, _ = written
    entry = json.loads(chain.line(0))
    assert entry["kid"] == signer.kid and base64.b64decode(entry["sig"])
    assert leaf_hash(chain.line(0)) != leaf_hash(chain.line(1))
    assert make_entry(0, "0" * 64, {"type": "x"}, "1-0")["hash"]  # unsigned entries still hash


def test_fsync_failure_stops_the_writer_and_never_advances_the_head(tmp_path: Path, keyring, monkeypatch) -> None:
    """Fault injection at the OS boundary: the error must propagate (the worker dies loudly and its
    events stay unacknowledged in the channel) instead of being swallowed."""
    chain = AuditChain(tmp_path / "audit" / "audit.log", keyring.active())
    chain.append_batch(_events(0, 3))

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("audit.chain.os.fsync", failing_fsync)
    with pytest.raises(OSError):
        chain.append_batch(_events(3, 2))
    assert chain.head.next_seq == 3
    monkeypatch.undo()
    chain.close()
