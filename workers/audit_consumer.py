"""The audit worker: the single writer that moves events from the durable channel into the log.

Events are read through a consumer group, signed, written and fsynced as a batch (group commit), and
only then acknowledged; after a crash, the unacknowledged ones are read again and the chain skips those
it already holds. A signed checkpoint of the Merkle tree is cut at least every
``QGATE_CHECKPOINT_SECONDS`` while entries arrive. A Redis lock makes sure only one writer runs.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid
from typing import Any

import structlog

from audit.chain import AuditChain
from audit.channel import GROUP, STREAM, decode_event, ensure_group, job_index_key
from audit.entry import decode_line
from audit.checkpoints import CheckpointStore, checkpoint_body, sign_checkpoint
from audit.keys import KEYRING, Keyring, signer_from_file
from audit.note import Checkpoint, parse_checkpoint
from settings import Settings

log = structlog.get_logger("qgate.audit")
CONSUMER = "audit-writer"
LOCK = "qgate:audit:writer-lock"
LOCK_TTL_S = 10
BATCH = 512
REINDEX_TAIL = 4 * BATCH


class LogRolledBack(RuntimeError):
    """The log holds less than, or something other than, what a signed checkpoint committed to."""


class AuditWriter:
    def __init__(self, redis: Any, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._keyring_mtime = self._keyring_stamp()
        self.chain = AuditChain(settings.audit_path, self._signer())
        self.checkpoints = CheckpointStore(self.chain.paths.checkpoints)
        self.checkpointed = self._check_latest_checkpoint()
        self.checkpointed_at = 0.0
        self._reindex_tail()

    def close(self) -> None:
        self.chain.close()

    def _signer(self) -> Any:
        if self.settings.audit_key_file:
            return signer_from_file(self.settings.audit_key_file, self.settings.audit_origin)
        return Keyring(self.settings.audit_keys_dir, self.settings.audit_origin).active()

    def _keyring_stamp(self) -> float:
        path = self.settings.audit_keys_dir / KEYRING
        return path.stat().st_mtime if path.exists() else 0.0

    def _check_latest_checkpoint(self) -> int:
        """Refuse to append to a log that is shorter than, or differs from, its latest checkpoint."""
        note = self.checkpoints.latest()
        if note is None:
            return 0
        checkpoint = parse_checkpoint(checkpoint_body(note))
        if self.chain.size < checkpoint.size:
            raise LogRolledBack(f"audit log has {self.chain.size} entries but checkpoint {checkpoint.size} was "
                                "signed: the log was truncated or rolled back; refusing to write")
        if self.chain.tree.root(checkpoint.size) != checkpoint.root_hash:
            raise LogRolledBack(f"the first {checkpoint.size} entries do not hash to the signed checkpoint: "
                                "history was rewritten; refusing to write")
        return checkpoint.size

    def _reindex_tail(self) -> None:
        """Redo the job index for the last batches, in case a crash came between fsync and indexing."""
        start = max(0, self.chain.size - REINDEX_TAIL)
        entries = [(i, self.chain.line(i)) for i in range(start, self.chain.size)]
        pipe = self.redis.pipeline()
        for i, line in entries:
            job_id = _job_id(line)
            if job_id:
                pipe.sadd(job_index_key(job_id), i)
        pipe.execute()

    def maybe_rotate(self) -> None:
        stamp = self._keyring_stamp()
        if stamp != self._keyring_mtime:
            self._keyring_mtime = stamp
            self.chain.signer = self._signer()
            log.info("audit_signing_key_changed", kid=self.chain.signer.kid)
            self.checkpoint(force=True)

    def drain_once(self, cursor: str, block_ms: int = 200) -> str:
        """Read one batch from ``cursor`` ("0" = our unacknowledged events, ">" = new ones), make it
        durable, then index, acknowledge and delete it from the stream. Returns the next cursor."""
        reply = self.redis.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=BATCH,
                                      block=None if cursor == "0" else block_ms)
        messages = reply[0][1] if reply else []
        if not messages:
            return ">"
        written = self.chain.append_batch((msg_id, decode_event(fields)) for msg_id, fields in messages)
        ids = [msg_id for msg_id, _ in messages]
        pipe = self.redis.pipeline()
        for entry in written:
            if entry.get("job_id"):
                pipe.sadd(job_index_key(entry["job_id"]), entry["seq"])
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()
        return cursor

    def checkpoint(self, force: bool = False) -> None:
        """Cut a signed checkpoint when entries arrived since the last one and the interval has passed."""
        size = self.chain.size
        due = time.monotonic() - self.checkpointed_at >= self.settings.checkpoint_seconds
        if size == 0 or (not force and (size == self.checkpointed or not due)):
            return
        body = Checkpoint(self.settings.audit_origin, size, self.chain.tree.root(size), [])
        signer = self.chain.signer
        self.checkpoints.save(size, signer.kid, sign_checkpoint(body, signer))
        self.checkpointed, self.checkpointed_at = size, time.monotonic()
        log.info("audit_checkpoint", size=size, kid=signer.kid)


def _job_id(line: bytes) -> str | None:
    return decode_line(line).get("job_id")


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


def run(redis: Any, settings: Settings, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    token = f"{socket.gethostname()}:{uuid.uuid4().hex}"
    if not _acquire_writer_lock(redis, token, stop):
        return
    ensure_group(redis)
    writer = AuditWriter(redis, settings)
    if writer.chain.repaired_bytes:
        log.warning("audit_torn_tail_repaired", bytes=writer.chain.repaired_bytes)
    log.info("audit_writer_started", path=str(settings.audit_path), next_seq=writer.chain.size,
             kid=writer.chain.signer.kid)
    cursor = "0"
    try:
        while not stop.is_set():
            try:
                if redis.get(LOCK) != token:
                    raise RuntimeError("audit writer lock lost; another writer may be running")
                redis.expire(LOCK, LOCK_TTL_S)
                writer.maybe_rotate()
                cursor = writer.drain_once(cursor)
                writer.checkpoint()
            except OSError:
                raise  # a failed write or fsync must stop the writer, never be skipped
            except Exception as exc:
                if "redis" not in type(exc).__module__:
                    raise
                log.warning("audit_channel_unavailable", error=f"{type(exc).__name__}: {exc}")
                stop.wait(1.0)
                cursor = "0"
        writer.checkpoint(force=writer.chain.size != writer.checkpointed)
    finally:
        writer.close()
        _release_writer_lock(redis, token)
        log.info("audit_writer_stopped", next_seq=writer.chain.size)


def main() -> None:
    from jobs.connection import get_redis
    from settings import get_settings
    from telemetry.logging import configure_logging

    configure_logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(get_redis(), get_settings(), stop)
