"""The hash chain: appends, recovery, duplicate suppression, and every kind of tampering detected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.chain import AuditChain
from audit.entry import GENESIS, encode_line, entry_hash
from audit.verify import verify_file, verify_lines


def _events(n: int, start: int = 1) -> list[tuple[str, dict]]:
    return [(f"{1000 + i}-0", {"type": "job.accepted", "job_id": f"j{i}", "tenant": "t", "data": {"i": i}})
            for i in range(start, start + n)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    chain = AuditChain(path)
    chain.append_batch(_events(6))
    chain.close()
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_chain_links_each_entry_to_the_previous(log: Path) -> None:
    entries = [json.loads(line) for line in _lines(log)]
    assert [e["seq"] for e in entries] == list(range(6))
    assert entries[0]["prev"] == GENESIS
    for before, after in zip(entries, entries[1:]):
        assert after["prev"] == before["hash"]
    assert all(e["hash"] == entry_hash(e) for e in entries)
    result = verify_file(log)
    assert result.valid and result.entries == 6 and result.head == entries[-1]["hash"]


def test_reopening_continues_the_chain_and_skips_redelivered_events(log: Path) -> None:
    chain = AuditChain(log)
    assert chain.head.next_seq == 6
    written = chain.append_batch(_events(3, start=5))  # events 5 and 6 were written before
    chain.close()
    assert [e["data"]["i"] for e in written] == [7]
    assert verify_file(log).entries == 7


def test_torn_last_line_is_cut_at_start(log: Path) -> None:
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"seq":6,"prev":"ab')
    assert not verify_file(log).valid
    chain = AuditChain(log)
    assert chain.repaired_bytes == len(b'{"seq":6,"prev":"ab')
    assert log.read_bytes() == whole
    chain.append_batch(_events(1, start=7))
    chain.close()
    assert verify_file(log).entries == 7


def _tamper_cases(lines: list[bytes]) -> dict[str, tuple[list[bytes], int]]:
    edited = json.loads(lines[2])
    edited["data"] = {"i": 999}
    forged = json.loads(lines[3])
    forged["data"] = {"i": 998}
    forged["hash"] = entry_hash(forged)  # a careful forger recomputes the entry's own hash
    inserted = dict(json.loads(lines[1]), job_id="intruder")
    inserted["hash"] = entry_hash(inserted)
    return {
        "edited": (lines[:2] + [encode_line(edited)] + lines[3:], 2),
        "edited with its hash recomputed": (lines[:3] + [encode_line(forged)] + lines[4:], 4),
        "deleted": (lines[:3] + lines[4:], 3),
        "reordered": (lines[:1] + [lines[2], lines[1]] + lines[3:], 1),
        "inserted": (lines[:2] + [encode_line(inserted)] + lines[2:], 2),
        "not json": (lines[:4] + [b"garbage\n"] + lines[5:], 4),
    }


@pytest.mark.parametrize("case", ["edited", "edited with its hash recomputed", "deleted", "reordered",
                                  "inserted", "not json"])
def test_every_kind_of_tampering_is_detected_at_the_first_bad_entry(log: Path, case: str) -> None:
    tampered, first_bad = _tamper_cases(_lines(log))[case]
    result = verify_lines(tampered)
    assert not result.valid
    assert result.first_bad_seq == first_bad, result.reason
    assert result.reason


def test_missing_log_is_empty_and_valid(tmp_path: Path) -> None:
    result = verify_file(tmp_path / "none.log")
    assert result.valid and result.entries == 0


GARBAGE_LINES = [b"[1,2]\n", b"{}\n", b'{"seq":0}\n', b'{"seq":0,"prev":"' + b"0" * 64 + b'","hash":5}\n',
                 b'{"seq":0,"prev":"' + b"0" * 64 + b'","hash":"x","v":NaN}\n', b'{"seq":"0"}\n', b"\xff\xfe\n",
                 b"1" * 5000 + b"\n", b"[" * 50_000 + b"\n", b'{"seq":0,"prev":"' + b"0" * 64 + b'","hash":"x","k":"\\ud800"}\n']


@pytest.mark.parametrize("line", GARBAGE_LINES)
def test_verification_names_a_bad_line_and_never_raises(line: bytes) -> None:
    from audit.verify import verify_lines

    result = verify_lines([line])
    assert not result.valid and result.first_bad_seq == 0 and result.reason


@pytest.mark.parametrize("value", [1e17, 1e20, -1e19, 2.0**60, 9007199254740993.0, 1e300])
def test_whole_floats_beyond_2_53_are_read_back_as_written(tmp_path: Path, value: float) -> None:
    """RFC 8785 writes 1e17 as 100000000000000000; reading that as a Python int made the verifier fail."""
    path = tmp_path / "audit.log"
    chain = AuditChain(path)
    chain.append_batch([("1-0", {"type": "x", "data": {"v": value}})])
    chain.close()
    result = verify_file(path)
    assert result.valid, result.reason


def test_an_unencodable_event_is_replaced_by_its_quarantine_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    chain = AuditChain(path)
    seen = []

    def quarantine(event_id: str, event: object, reason: str) -> dict:
        seen.append((event_id, reason))
        return {"type": "audit.quarantined", "data": {"stream_id": event_id, "reason": reason}}

    written = chain.append_batch([("1-0", {"type": "ok"}), ("2-0", {"type": "x", "v": float("nan")}),
                                  ("3-0", {"type": "x", "v": 2**64}), ("4-0", {"type": "x", "v": "\ud800"}),
                                  ("5-0", ["not", "an", "object"]), ("6-0", {"type": "ok"})], quarantine)
    chain.close()
    assert [e["type"] for e in written] == ["ok"] + ["audit.quarantined"] * 4 + ["ok"]
    assert [event_id for event_id, _ in seen] == ["2-0", "3-0", "4-0", "5-0"]
    assert verify_file(path).valid


def test_without_a_quarantine_an_unencodable_batch_is_refused_whole(tmp_path: Path) -> None:
    chain = AuditChain(tmp_path / "audit.log")
    with pytest.raises(ValueError):
        chain.append_batch([("1-0", {"type": "ok"}), ("2-0", {"v": float("inf")})])
    assert chain.size == 0
    chain.close()
