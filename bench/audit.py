"""Audit benchmarks, side by side in one run.

1. Appends per second through AuditChain (sign, hash, canonical JSON, write, index, tree, group-commit
   fsync) against the raw cost of the same number of Ed25519 signs plus SHA-256 over the same bytes.
2. Full offline verification of a log of --entries entries (chain, signatures, a checkpoint root).
3. Inclusion and consistency proof time in a tree of 1,000,000 leaves.

Usage: python -m bench.audit [--entries N] [--appends N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from audit.chain import AuditChain
from audit.entry import signed_bytes
from audit.keys import Keyring
from audit.merkle import MerkleStore
from audit.note import Checkpoint
from audit.verify import verify_file

BATCH = 512


def _events(n: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{1_000_000 + i}-0", {"type": "attempt.succeeded", "ts": 1_700_000_000.123 + i, "job_id": f"{i:032x}",
                                    "tenant": "acme", "data": {"lane": "heuristic", "outcome": "succeeded",
                                                               "duration_ms": 12.5, "attempt": 1}})
            for i in range(start, start + n)]


def append_rate(directory: Path, count: int) -> dict[str, Any]:
    signer = Keyring(directory / "keys", "bench/audit").active()
    chain = AuditChain(directory / "log" / "audit.log", signer)
    events = _events(count)
    started = time.perf_counter()
    for i in range(0, count, BATCH):
        chain.append_batch(events[i:i + BATCH])
    appended_s = time.perf_counter() - started
    lines = [chain.line(i) for i in range(count)]
    chain.close()
    payloads = [signed_bytes(json.loads(line)) for line in lines]
    started = time.perf_counter()
    for payload, line in zip(payloads, lines):
        signer.sign(payload)
        hashlib.sha256(line).digest()
    raw_s = time.perf_counter() - started
    return {"entries": count, "batch": BATCH, "appends_per_s": round(count / appended_s),
            "raw_sign_sha256_per_s": round(count / raw_s), "ratio_append_to_raw": round(raw_s / appended_s, 3)}


def verification_rate(directory: Path, count: int) -> dict[str, Any]:
    keyring = Keyring(directory / "vkeys", "bench/audit")
    signer = keyring.active()
    chain = AuditChain(directory / "vlog" / "audit.log", signer)
    for i in range(0, count, 4096):
        chain.append_batch(_events(min(4096, count - i), i))
    checkpoint = Checkpoint("bench/audit", count, chain.tree.root(count), [])
    chain.close()
    keys = {info.kid: info.verifier() for info in keyring.keys()}
    started = time.perf_counter()
    result = verify_file(chain.paths.log, keys, [checkpoint])
    elapsed = time.perf_counter() - started
    assert result.valid, result
    return {"entries": count, "seconds": round(elapsed, 2), "entries_per_s": round(count / elapsed),
            "log_mb": round(os.path.getsize(chain.paths.log) / 2**20, 1)}


def proof_times(directory: Path, leaves: int = 1_000_000, samples: int = 2000) -> dict[str, Any]:
    store = MerkleStore(directory / "tree")
    rng = random.Random(7)
    store.append(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(leaves))
    store.flush()
    def timed(call: Any) -> float:
        runs = []
        for _ in range(samples):
            started = time.perf_counter()
            call()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs) * 1e6
    inclusion = timed(lambda: store.inclusion_proof(rng.randrange(leaves), leaves))
    consistency = timed(lambda: store.consistency_proof(rng.randrange(1, leaves), leaves))
    store.close()
    return {"leaves": leaves, "inclusion_us_p50": round(inclusion, 1), "consistency_us_p50": round(consistency, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in the log to verify")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        base = Path(tmp)
        report = {"append": append_rate(base, args.appends), "proofs": proof_times(base),
                  "verify": verification_rate(base, args.entries)}
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
