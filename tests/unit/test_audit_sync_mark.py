"""The derived files (line index, Merkle tree) are fsynced at intervals, not per batch: a crash between
syncs must never leave a wrong node or offset behind, whatever part of the unsynced writes reached disk."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

from audit.chain import AuditChain, SyncMark
from audit.index import RECORD
from audit.merkle import HASH_SIZE, MerkleStore, leaf_hash


def _events(n: int, start: int = 1) -> list[tuple[str, dict]]:
    return [(f"{1000 + i}-0", {"type": "job.accepted", "job_id": f"j{i}", "tenant": "t", "data": {"i": i}})
            for i in range(start, start + n)]


def _crash(chain: AuditChain) -> None:
    """Drop the writer without its closing sync, as a killed process would (the flock goes with the fd)."""
    os.close(chain._fd)
    chain.index.close()
    chain.tree.close()
    chain.mark.close()


def _expected_tree(log: Path, tmp: Path) -> MerkleStore:
    store = MerkleStore(tmp / "reference-tree")
    store.append(leaf_hash(line) for line in log.read_bytes().splitlines())
    store.flush()
    return store


def _zero_record(path: Path, index: int, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(index * size)
        handle.write(b"\0" * size)


def test_a_batch_between_syncs_costs_one_fsync(tmp_path: Path) -> None:
    chain = AuditChain(tmp_path / "audit.log", sync_interval_s=3600)
    chain.append_batch(_events(600))
    with mock.patch("os.fsync", wraps=os.fsync) as fsync:
        chain.append_batch(_events(700, start=601))
    assert fsync.call_count == 1
    chain.close()


@pytest.mark.parametrize("damage", ["index-middle", "tree-leaf-middle", "tree-upper-level", "both"])
def test_unsynced_damage_past_the_mark_is_derived_again_from_the_log(tmp_path: Path, damage: str) -> None:
    log = tmp_path / "audit.log"
    chain = AuditChain(log, sync_interval_s=3600)
    chain.append_batch(_events(100))
    chain.sync()  # the mark says 100
    chain.append_batch(_events(157, start=101))  # 157 entries whose derived records were never fsynced
    offsets = [chain.index.offset(i) for i in range(chain.size)]
    _crash(chain)
    # lost writes: records in the middle of the unsynced part read back as zeros, the last ones intact
    if damage in ("index-middle", "both"):
        _zero_record(chain.paths.index, 130, RECORD.size)
    if damage in ("tree-leaf-middle", "both"):
        _zero_record(chain.paths.tree / "level-00.bin", 140, HASH_SIZE)
    if damage == "tree-upper-level":
        _zero_record(sorted(chain.paths.tree.iterdir())[2], 30, HASH_SIZE)

    reopened = AuditChain(log)
    reference = _expected_tree(log, tmp_path)
    assert reopened.size == 257
    assert [reopened.index.offset(i) for i in range(257)] == offsets
    reopened.close()
    for level_file in sorted((tmp_path / "reference-tree").iterdir()):  # every stored node, every level
        assert (chain.paths.tree / level_file.name).read_bytes() == level_file.read_bytes(), level_file.name
    for size in (1, 100, 101, 128, 200, 256, 257):
        assert reopened.tree.root(size) == reference.root(size)


def test_an_unreadable_mark_rebuilds_everything(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    chain = AuditChain(log)
    chain.append_batch(_events(50))
    chain.close()
    mark = chain.paths.synced_mark
    mark.write_bytes(b"\xff" * 12)  # the CRC does not match
    _zero_record(chain.paths.tree / "level-00.bin", 10, HASH_SIZE)
    reopened = AuditChain(log)
    reopened.close()
    _expected_tree(log, tmp_path).close()
    assert (chain.paths.tree / "level-00.bin").read_bytes() == (tmp_path / "reference-tree" / "level-00.bin").read_bytes()
    assert SyncMark(mark).read() == 50


def test_a_log_from_before_the_mark_opens_as_it_stands(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    chain = AuditChain(log)
    chain.append_batch(_events(40))
    chain.close()
    chain.paths.synced_mark.unlink()
    reopened = AuditChain(log)
    assert reopened.size == 40 and reopened.tree.root(40) == _expected_tree(log, tmp_path).root(40)
    assert SyncMark(chain.paths.synced_mark).read() == 40
    reopened.close()


def test_close_syncs_and_marks_everything(tmp_path: Path) -> None:
    chain = AuditChain(tmp_path / "audit.log", sync_interval_s=3600)
    chain.append_batch(_events(33))
    assert SyncMark(chain.paths.synced_mark).read() == 0
    chain.close()
    assert SyncMark(chain.paths.synced_mark).read() == 33
