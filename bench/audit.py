"""Audit benchmarks, side by side in one run.

1. Appends per second through AuditChain (sign, hash, canonical JSON, write, index, tree, the log's
   group-commit fsync per batch and the derived files' fsync every second, as the writer runs) against the raw cost of the same number of Ed25519 signs plus SHA-256 over the same bytes:
   the ratio, and the target (>= 0.50). The two are timed batch by batch, interleaved, so that a change
   in the machine's load during the run weighs on both alike. For comparison, the same appends with
   the canonical form left to the ``rfc8785`` reference (what the writer did before the fast form).
2. Full offline verification of a log of --entries entries (chain, signatures, a checkpoint root).
3. Inclusion and consistency proof time in a tree of 1,000,000 leaves.

Usage: python -m bench.audit [--entries N] [--appends N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from audit.canonical import Fallback
from audit.chain import AuditChain
from audit.entry import signed_bytes
from audit.keys import Keyring
from audit.merkle import MerkleStore
from audit.note import Checkpoint
from audit.verify import verify_file

BATCH = 512
TARGET_RATIO = 0.50  # appends/s against the raw sign+hash ceiling (issue 9, item 6)


def _events(n: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{1_000_000 + i}-0", {"type": "attempt.succeeded", "ts": 1_700_000_000.123 + i, "job_id": f"{i:032x}",
                                    "tenant": "acme", "data": {"lane": "heuristic", "outcome": "succeeded",
                                                               "duration_ms": 12.5, "attempt": 1}})
            for i in range(start, start + n)]


def append_rate(directory: Path, count: int, *, reference: bool = False) -> dict[str, Any]:
    """Appends/s against the raw sign+hash ceiling over the same bytes, timed batch by batch in turn.

    ``reference``: every entry canonicalised by ``rfc8785`` (three times) and its line decoded back, as
    the writer did before the fast canonical form."""
    name = "ref" if reference else "fast"
    signer = Keyring(directory / f"keys-{name}", "bench/audit").active()
    chain = AuditChain(directory / f"log-{name}" / "audit.log", signer)
    events = _events(count)
    appended_s = raw_s = 0.0
    ratios = []
    sealing = [0.0]
    seal = chain._seal

    def timed_seal(*args: Any) -> Any:  # to split the append time into sealing and the durable write
        started = time.perf_counter()
        try:
            return seal(*args)
        finally:
            sealing[0] += time.perf_counter() - started

    chain._seal = timed_seal  # type: ignore[method-assign]
    with mock.patch("audit.entry.object_members", side_effect=Fallback) if reference else contextlib.nullcontext():
        for i in range(0, count, BATCH):
            started = time.perf_counter()
            written = chain.append_batch(events[i:i + BATCH])
            batch_s = time.perf_counter() - started
            payloads = [(signed_bytes(entry), chain.line(entry["seq"])) for entry in written]
            started = time.perf_counter()
            for payload, line in payloads:
                signer.sign(payload)
                hashlib.sha256(line).digest()
            batch_raw_s = time.perf_counter() - started
            appended_s += batch_s
            raw_s += batch_raw_s
            ratios.append(batch_raw_s / batch_s)
    chain.close()
    ratio = raw_s / appended_s
    report = {"entries": count, "batch": BATCH, "appends_per_s": round(count / appended_s),
              "raw_sign_sha256_per_s": round(count / raw_s), "ratio_append_to_raw": round(ratio, 3),
              "ratio_median_of_batches": round(statistics.median(ratios), 3),
              "us_per_append": {"raw_sign_sha256": round(raw_s / count * 1e6, 1),
                                "seal": round(sealing[0] / count * 1e6, 1),
                                "write_index_tree_fsync": round((appended_s - sealing[0]) / count * 1e6, 1)}}
    if not reference:
        report.update(target_ratio=TARGET_RATIO, meets_target=ratio >= TARGET_RATIO)
    return report


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
    parser.add_argument("--dir", default=".", help="where the logs are written (their fsyncs are timed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        report = {"append": append_rate(base, args.appends),
                  "append_with_rfc8785_reference": append_rate(base, args.appends, reference=True),
                  "proofs": proof_times(base), "verify": verification_rate(base, args.entries)}
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    fast, ref = report["append"], report["append_with_rfc8785_reference"]
    print(f"audit appends: {fast['appends_per_s']}/s against a raw sign+hash ceiling of "
          f"{fast['raw_sign_sha256_per_s']}/s = {fast['ratio_append_to_raw']:.2f} of the ceiling "
          f"(target >= {TARGET_RATIO:.2f}: {'met' if fast['meets_target'] else 'NOT met'}); "
          f"with the rfc8785 reference: {ref['ratio_append_to_raw']:.2f}")


if __name__ == "__main__":
    main()
