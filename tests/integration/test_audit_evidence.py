"""The audit log as evidence, through the running stack: checkpoints, keys, proofs, receipts checked
offline, entry ranges per scope, key rotation, and the audit worker SIGKILLed in a burst."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from pathlib import Path

import requests

from audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from audit.note import open_note, parse_checkpoint, parse_vkey
from tests.integration import problems
from tests.integration.stack import Stack, wait_for


def _get(stack: Stack, token: str, path: str, **params) -> requests.Response:
    return requests.get(stack.url + path, headers=stack.headers(token), params=params, timeout=30)


def _vkeys(stack: Stack, token: str) -> list[str]:
    return [k["vkey"] for k in _get(stack, token, "/api/v1/audit/keys").json()["keys"]]


def _finished_job(stack: Stack, token: str) -> dict:
    reply = stack.solve(token, {"problem": problems.tsp(6)}, budget_ms=1000)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_receipt_verifies_offline_and_fails_when_changed(stack: Stack, token: str, tmp_path: Path) -> None:
    job = _finished_job(stack, token)
    reply = requests.get(stack.url + job["audit"]["receipt_url"], headers=stack.headers(token), timeout=30)
    assert reply.status_code == 200, reply.text
    receipt = reply.json()
    assert receipt["job_id"] == job["job_id"]
    assert [json.loads(e["line"])["type"] for e in receipt["entries"]][-1] == "job.succeeded"
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    key_args = [arg for vkey in _vkeys(stack, token) for arg in ("--key", vkey)]
    done = stack.cli("audit", "verify-receipt", str(path), *key_args)
    assert done.returncode == 0, done.stderr
    receipt["entries"][0]["line"] = receipt["entries"][0]["line"].replace('"acme"', '"other"')
    path.write_text(json.dumps(receipt))
    done = stack.cli("audit", "verify-receipt", str(path), *key_args)
    assert done.returncode == 1 and "does NOT verify" in done.stderr


def test_receipts_and_entries_are_tenant_scoped(stack: Stack, token: str) -> None:
    job = _finished_job(stack, token)
    other = stack.token(stack.create_client("globex", "quantum:solve solver:heuristic audit:read"))
    assert requests.get(stack.url + job["audit"]["receipt_url"], headers=stack.headers(other),
                        timeout=30).status_code == 404
    started = time.monotonic()
    unknown = requests.get(stack.url + "/api/v1/audit/jobs/" + "f" * 32 + "/receipt", headers=stack.headers(token),
                           timeout=30)
    assert unknown.status_code == 404 and time.monotonic() - started < 2
    wait_for(lambda: _get(stack, token, "/api/v1/audit/checkpoint").status_code == 200, 10, "a checkpoint")
    size = parse_checkpoint(_get(stack, token, "/api/v1/audit/checkpoint").text.split("\n\n")[0] + "\n").size
    theirs = _get(stack, other, "/api/v1/audit/entries", start=0, end=size).json()["entries"]
    assert all(json.loads(e["line"]).get("tenant") == "globex" for e in theirs)
    admin = stack.token(stack.create_client("ops", "audit:read audit:admin"))
    everything = _get(stack, admin, "/api/v1/audit/entries", start=0, end=min(size, 1000)).json()["entries"]
    assert [e["index"] for e in everything] == list(range(min(size, 1000)))
    assert {json.loads(e["line"]).get("tenant") for e in everything} >= {"acme"}


def test_checkpoint_proofs_verify_against_the_signed_root(stack: Stack, token: str) -> None:
    _finished_job(stack, token)
    wait_for(lambda: _get(stack, token, "/api/v1/audit/checkpoint").status_code == 200, 10, "a checkpoint")
    note = _get(stack, token, "/api/v1/audit/checkpoint").text
    verifiers = [parse_vkey(v) for v in _vkeys(stack, token)]
    checkpoint = parse_checkpoint(open_note(note, verifiers).body)
    assert checkpoint.origin == "qgate.local/audit" and checkpoint.size > 5
    lines = stack.audit_path.read_bytes().splitlines()
    for index in (0, checkpoint.size // 2, checkpoint.size - 1):
        proof = _get(stack, token, "/api/v1/audit/proof/inclusion", index=index, size=checkpoint.size).json()
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        assert verify_inclusion(leaf_hash(lines[index]), index, checkpoint.size, hashes, checkpoint.root_hash)
    consistency = _get(stack, token, "/api/v1/audit/proof/consistency", first=3, second=checkpoint.size).json()
    assert consistency["first"] == 3 and isinstance(consistency["hashes"], list)
    from audit.merkle import compute_root
    assert verify_consistency(3, checkpoint.size, compute_root(lines[:3]), checkpoint.root_hash,
                              [base64.b64decode(h) for h in consistency["hashes"]])
    for params, code in [({"index": 0, "size": 10**9}, 404), ({"index": 5, "size": 5}, 400),
                         ({"index": "x", "size": 3}, 400)]:
        reply = _get(stack, token, "/api/v1/audit/proof/inclusion", **params)
        assert reply.status_code == code and reply.json()["error"]
    assert _get(stack, token, "/api/v1/audit/proof/consistency", first=0, second=3).status_code == 400
    assert _get(stack, token, "/api/v1/audit/proof/consistency", first=2, second=10**9).status_code == 404


def test_key_rotation_keeps_old_checkpoints_valid(stack: Stack, token: str, tmp_path: Path) -> None:
    _finished_job(stack, token)
    wait_for(lambda: _get(stack, token, "/api/v1/audit/checkpoint").status_code == 200, 10, "a checkpoint")
    old_note = _get(stack, token, "/api/v1/audit/checkpoint").text
    old_keys = _vkeys(stack, token)
    rotated = stack.cli("audit", "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    _finished_job(stack, token)
    new_keys = _vkeys(stack, token)
    assert len(new_keys) == len(old_keys) + 1
    def signed_by_new() -> bool:
        note = _get(stack, token, "/api/v1/audit/checkpoint").text
        return note != old_note and f"\u2014 qgate.local/audit " in note and _open(note, new_keys[-1:])
    wait_for(signed_by_new, 10, "a checkpoint signed by the new key")
    assert _open(old_note, old_keys)
    old_file = tmp_path / "old.note"
    old_file.write_text(old_note)
    stack.wait_audited(_finished_job(stack, token)["job_id"], "job.succeeded")
    done = stack.cli("audit", "verify", "--log", str(stack.audit_path), "--checkpoint", str(old_file))
    assert done.returncode == 0, done.stderr


def _open(note: str, vkeys: list[str]) -> bool:
    try:
        open_note(note, [parse_vkey(v) for v in vkeys])
        return True
    except ValueError:
        return False


def test_audit_worker_killed_mid_burst_loses_nothing_and_writes_nothing_twice(stack: Stack, token: str) -> None:
    before = len(stack.audit_entries())
    redis = stack.redis()
    burst = [{"event": json.dumps({"type": "drill.burst", "ts": 0, "job_id": None, "tenant": "acme",
                                   "data": {"n": n}})} for n in range(20000)]
    pipe = redis.pipeline()
    for fields in burst:
        pipe.xadd("qgate:audit:events", fields)
    pipe.execute()
    wait_for(lambda: len(stack.audit_entries()) > before + 100, 20, "the writer to start on the burst")
    stack.kill_audit()
    assert len(stack.audit_entries()) < before + 20000, "the kill should land mid-burst"
    stack.start_audit()
    wait_for(lambda: len(stack.audit_entries()) >= before + 20000, 60, "the whole burst to be written")
    entries = stack.audit_entries()
    drills = [e["data"]["n"] for e in entries if e["type"] == "drill.burst"]
    assert sorted(drills) == list(range(20000))
    assert max(Counter(e["event_id"] for e in entries).values()) == 1
    done = stack.cli("audit", "verify")
    assert done.returncode == 0, done.stderr
