"""The audit worker: the single writer that moves events from the durable channel into the chain.

Events are read through a consumer group, written and fsynced as a batch, and only then acknowledged;
after a crash, the unacknowledged ones are read again and the chain skips those it already holds.
A Redis lock makes sure only one audit worker writes at a time.
"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import structlog

from audit.chain import AuditChain
from audit.channel import GROUP, STREAM, decode_event, ensure_group

log = structlog.get_logger("qgate.audit")
CONSUMER = "audit-writer"
LOCK = "qgate:audit:writer-lock"
LOCK_TTL_S = 10


def _acquire_writer_lock(redis: Any, token: str, stop: threading.Event) -> bool:
    while not stop.is_set():
        if redis.set(LOCK, token, nx=True, ex=LOCK_TTL_S) or redis.get(LOCK) == token:
            redis.expire(LOCK, LOCK_TTL_S)
            return True
        log.info("audit_writer_waiting_for_lock")
        stop.wait(1.0)
    return False


def _release_writer_lock(redis: Any, token: str) -> None:
    try:
        if redis.get(LOCK) == token:
            redis.delete(LOCK)
    except Exception:  # Redis away: the lock expires by itself
        pass


def drain_once(redis: Any, chain: AuditChain, cursor: str, block_ms: int = 1000, batch: int = 512) -> tuple[int, str]:
    """Read one batch from ``cursor`` ("0" = our unacknowledged events, ">" = new ones), make it durable
    in the chain, then acknowledge and delete it from the stream. Returns (events read, next cursor)."""
    reply = redis.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=batch,
                             block=None if cursor == "0" else block_ms)
    messages = reply[0][1] if reply else []
    if not messages:
        return 0, ">"
    chain.append_batch((msg_id, decode_event(fields)) for msg_id, fields in messages)
    ids = [msg_id for msg_id, _ in messages]
    pipe = redis.pipeline()
    pipe.xack(STREAM, GROUP, *ids)
    pipe.xdel(STREAM, *ids)
    pipe.execute()
    return len(messages), cursor


def run(redis: Any, path: Path, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    token = f"{socket.gethostname()}:{uuid.uuid4().hex}"
    if not _acquire_writer_lock(redis, token, stop):
        return
    ensure_group(redis)
    chain = AuditChain(path)
    if chain.repaired_bytes:
        log.warning("audit_torn_tail_repaired", bytes=chain.repaired_bytes)
    log.info("audit_writer_started", path=str(path), next_seq=chain.head.next_seq)
    cursor = "0"
    try:
        while not stop.is_set():
            try:
                if redis.get(LOCK) != token:
                    raise RuntimeError("audit writer lock lost; another writer may be running")
                redis.expire(LOCK, LOCK_TTL_S)
                count, cursor = drain_once(redis, chain, cursor)
            except OSError:
                raise
            except Exception as exc:
                if "redis" not in type(exc).__module__:
                    raise
                log.warning("audit_channel_unavailable", error=f"{type(exc).__name__}: {exc}")
                stop.wait(1.0)
                cursor = "0"
    finally:
        chain.close()
        _release_writer_lock(redis, token)
        log.info("audit_writer_stopped", next_seq=chain.head.next_seq)


def main() -> None:
    from jobs.connection import get_redis
    from settings import get_settings
    from telemetry.logging import configure_logging

    configure_logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(get_redis(), get_settings().audit_path, stop)
