"""The audit writer against a real redis-server: poison events, lock loss, Redis restarts and pauses.

The writer runs in a thread of this process (the same ``run`` the audit worker runs), so each test can
watch it, hurt Redis under it, and check that it is still alive and the log still verifies.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from audit.chain import AuditChain, LogBusy
from audit.channel import DEAD_LETTERS, STREAM, emit
from audit.verify import verify_file
from jobs.connection import connect
from settings import Settings
from telemetry.metrics import COUNTERS
from tests.integration.stack import Stack, wait_for
from workers import audit_consumer

GOOD = '{"type":"job.accepted","ts":1.0,"job_id":"%s","tenant":"acme","data":{"n":1}}'
POISON = {
    "nan literal": '{"type":"x","ts":1.0,"job_id":"p1","tenant":"acme","data":{"v":NaN}}',
    "infinity literal": '{"type":"x","ts":1.0,"job_id":"p2","tenant":"acme","data":{"v":-Infinity}}',
    "float overflow": '{"type":"x","ts":1.0,"job_id":"p3","tenant":"acme","data":{"v":1e400}}',
    "integer beyond 2**53": '{"type":"x","ts":1.0,"job_id":"p4","tenant":"acme","data":{"v":9007199254740993}}',
    "lone surrogate": '{"type":"x","ts":1.0,"job_id":"p5","tenant":"acme","data":{"v":"\\ud800"}}',
    "surrogate in a key": '{"type":"x","ts":1.0,"job_id":"p6","tenant":"acme","data":{"\\udfff":1}}',
    "not json": "{not json",
    "json array": "[1, 2, 3]",
    "json string": '"hello"',
    "deep nesting": "[" * 5000 + "]" * 5000,
}


def _settings(rig: Stack) -> Settings:
    return Settings.from_env({"REDIS_URL": rig.env["REDIS_URL"], "QGATE_VAR_DIR": str(rig.base / "var"),
                              "QGATE_AUDIT_PATH": str(rig.audit_path), "QGATE_CHECKPOINT_SECONDS": "0.2"})


class Writer:
    """``audit_consumer.run`` in a thread, the way the audit worker runs it."""

    def __init__(self, rig: Stack) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(connect(rig.env["REDIS_URL"]), _settings(rig)),
                                       daemon=True)
        self.thread.start()

    def _run(self, client: redis.Redis, settings: Settings) -> None:
        try:
            audit_consumer.run(client, settings, self.stop)
        except BaseException as exc:  # the test asserts there is none
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the writer did not stop"
        assert self.error is None, f"the writer died: {self.error!r}"


def _lines(rig: Stack) -> list[dict[str, Any]]:
    return rig.audit_entries()


def _written(rig: Stack, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    return wait_for(lambda: (lambda e: e if len(e) >= count else None)(_lines(rig)), timeout,
                    f"{count} audit entries")


def test_poison_events_are_quarantined_and_the_writer_goes_on(rig: Stack) -> None:
    client = rig.redis()
    ids = {}
    client.xadd(STREAM, {"event": GOOD % "before"})
    for name, raw in POISON.items():
        ids[name] = client.xadd(STREAM, {"event": raw})
    ids["no event field"] = client.xadd(STREAM, {"other": "x"})
    client.xadd(STREAM, {"event": GOOD % "after"})
    writer = Writer(rig)
    try:
        entries = _written(rig, len(ids) + 2)
    finally:
        writer.close()
    assert verify_file(rig.audit_path).valid
    assert entries[0]["job_id"] == "before" and entries[-1]["job_id"] == "after"
    quarantined = {e["data"]["stream_id"]: e for e in entries if e["type"] == "audit.quarantined"}
    assert set(quarantined) == set(ids.values()), "every poison event has its quarantine entry"
    for entry in quarantined.values():
        assert entry["data"]["reason"] and entry["data"]["dead_letter_stream"] == DEAD_LETTERS
    dead = {fields["qgate_stream_id"]: fields for _, fields in client.xrange(DEAD_LETTERS)}
    assert set(dead) == set(ids.values()), "the originals wait in the dead-letter stream"
    assert dead[ids["lone surrogate"]]["event"] == POISON["lone surrogate"]
    assert int(client.hget(COUNTERS, "audit_quarantined")) == len(ids)
    assert client.xlen(STREAM) == 0


def test_whole_floats_beyond_2_53_verify(rig: Stack) -> None:
    """1e17 is written by RFC 8785 as 100000000000000000: the verifier must read it back as written."""
    client = rig.redis()
    for value in ("1e17", "1e20", "-9.007199254740993e15", "123456789012345680000.0", "5e-324", "1.7976931348623157e308"):
        client.xadd(STREAM, {"event": '{"type":"x","ts":1.0,"job_id":"f","tenant":"acme","data":{"v":%s}}' % value})
    writer = Writer(rig)
    try:
        entries = _written(rig, 6)
    finally:
        writer.close()
    assert all(e["type"] == "x" for e in entries), "finite floats are not poison"
    result = verify_file(rig.audit_path)
    assert result.valid, result.reason


def test_events_emitted_by_the_gateway_never_need_quarantine(rig: Stack) -> None:
    """The gateway's own emit() output is always loggable as it stands."""
    client = rig.redis()
    emit(client, "job.accepted", job_id="a" * 32, tenant="acme", plan=[{"lane": "sim"}], cost=1e17, n=3)
    writer = Writer(rig)
    try:
        entries = _written(rig, 1)
    finally:
        writer.close()
    assert entries[0]["type"] == "job.accepted" and verify_file(rig.audit_path).valid


def test_a_second_writer_on_the_same_log_is_refused_by_the_file_lock(tmp_path: Path) -> None:
    first = AuditChain(tmp_path / "audit.log")
    try:
        with pytest.raises(LogBusy):
            AuditChain(tmp_path / "audit.log")
    finally:
        first.close()
    AuditChain(tmp_path / "audit.log").close()


def test_a_writer_that_loses_its_lock_waits_as_a_standby_and_writes_nothing(rig: Stack) -> None:
    client = rig.redis()
    writer = Writer(rig)
    try:
        client.xadd(STREAM, {"event": GOOD % "one"})
        _written(rig, 1)
        client.set(audit_consumer.LOCK, "someone-else", ex=3)  # another writer took over
        time.sleep(0.5)
        client.xadd(STREAM, {"event": GOOD % "two"})
        time.sleep(1.5)
        assert len(_lines(rig)) == 1, "no append without the lock"
        assert writer.thread.is_alive() and writer.error is None
        _written(rig, 2, timeout=20)  # the other writer's lock expired: ours again
    finally:
        writer.close()
    assert [e["job_id"] for e in _lines(rig)] == ["one", "two"]
    assert verify_file(rig.audit_path).valid


def test_two_writers_never_fork_the_log(rig: Stack) -> None:
    client = rig.redis()
    first, second = Writer(rig), Writer(rig)
    try:
        for i in range(200):
            client.xadd(STREAM, {"event": GOOD % f"j{i}"})
        _written(rig, 200)
    finally:
        first.close()
        second.close()
    entries = _lines(rig)
    assert [e["job_id"] for e in entries] == [f"j{i}" for i in range(200)]
    assert verify_file(rig.audit_path).valid


def _restart_redis(rig: Stack, down_s: float) -> None:
    rig.stop_redis()
    time.sleep(down_s)
    rig.start_redis()


def test_the_writer_rides_out_a_redis_restart(rig: Stack) -> None:
    client = rig.redis()
    writer = Writer(rig)
    try:
        client.xadd(STREAM, {"event": GOOD % "before"})
        _written(rig, 1)
        _restart_redis(rig, 2.0)
        rig.redis().xadd(STREAM, {"event": GOOD % "after"})
        _written(rig, 2, timeout=30)
        assert writer.thread.is_alive() and writer.error is None
    finally:
        writer.close()
    assert verify_file(rig.audit_path).valid


def test_the_writer_rides_out_redis_paused_past_its_lock(rig: Stack) -> None:
    client = rig.redis()
    writer = Writer(rig)
    try:
        client.xadd(STREAM, {"event": GOOD % "before"})
        _written(rig, 1)
        assert rig.redis_proc is not None
        os.kill(rig.redis_proc.pid, signal.SIGSTOP)
        time.sleep(audit_consumer.LOCK_TTL_S + 2)
        os.kill(rig.redis_proc.pid, signal.SIGCONT)
        client.xadd(STREAM, {"event": GOOD % "after"})
        _written(rig, 2, timeout=30)
        assert writer.thread.is_alive() and writer.error is None
    finally:
        writer.close()
    assert [e["job_id"] for e in _lines(rig)] == ["before", "after"]
    assert verify_file(rig.audit_path).valid


def test_the_writer_starts_while_redis_is_down_and_waits_for_it(rig: Stack) -> None:
    rig.stop_redis()
    writer = Writer(rig)
    try:
        time.sleep(2)
        assert writer.thread.is_alive() and writer.error is None
        rig.start_redis()
        rig.redis().xadd(STREAM, {"event": GOOD % "late"})
        assert json.dumps(_written(rig, 1, timeout=30)[0]["job_id"]) == '"late"'
    finally:
        writer.close()
