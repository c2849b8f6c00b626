"""The audit worker: the single writer that moves events from the durable channel into the log.

Events are read through a consumer group, signed, written and fsynced as a batch (group commit), and
only then acknowledged; after a crash, the unacknowledged ones are read again and the chain skips those
it already holds. A signed checkpoint of the Merkle tree is cut at least every
``QGATE_CHECKPOINT_SECONDS`` while entries arrive.

Nothing an event holds can stop the writer: an event that canonical JSON cannot carry is copied to a
dead-letter stream and logged as a signed ``audit.quarantined`` entry in its place.

One writer at a time, twice over: an exclusive ``flock`` on the log for the writer's whole life (so a
paused writer that wakes up can never write beside its successor on the same host), and a Redis lock
(redis-py's atomic ``Lock``) for standbys, renewed and checked immediately before every append and every
checkpoint. A writer that loses the lock, or loses Redis, closes the log and waits as a standby; it
never exits for it.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable

import structlog

import redis as redis_lib
from redis.exceptions import LockError

from audit.chain import AuditChain, LogBusy
from audit.channel import DEAD_LETTERS, GROUP, STREAM, decode_event, ensure_group, job_index_key
from audit.entry import decode_line
from audit.checkpoints import CheckpointStore, checkpoint_body, sign_checkpoint
from audit.keys import KEYRING, Keyring, signer_from_file
from audit.note import Checkpoint, parse_checkpoint
from settings import Settings
from telemetry import tracing
from telemetry.metrics import AUDIT_CHECKPOINT_AT, COUNTERS, GAUGES

log = structlog.get_logger("qgate.audit")
CONSUMER = "audit-writer"
LOCK = "qgate:audit:writer-lock"
LOCK_TTL_S = 10
BATCH = 512
# Group commit: after a partial batch the writer waits this long before reading again, so that one read,
# one fsync, one lock renewal and one acknowledgement serve the events of that window together. Under
# a steady stream of submits this halved the writer's CPU per event; events wait at most this much
# longer before they are in the log (they are safe in the Redis stream meanwhile).
GROUP_COMMIT_S = 0.05
BACKOFF_MAX_S = 5.0
Guard = Callable[[], None]
REINDEX_TAIL = 4 * BATCH


class LogRolledBack(RuntimeError):
    """The log holds less than, or something other than, what a signed checkpoint committed to."""


class AuditWriter:
    def __init__(self, redis: Any, settings: Settings, guard: Guard = lambda: None) -> None:
        self.redis = redis
        self.settings = settings
        self.guard = guard
        self._keyring_mtime = self._keyring_stamp()
        self.chain = AuditChain(settings.audit_path, self._signer())
        self.checkpoints = CheckpointStore(self.chain.paths.checkpoints)
        self.checkpointed = self._check_latest_checkpoint()
        self.last_batch = 0
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
        self.last_batch = len(messages)
        if not messages:
            return ">"
        events = [(msg_id, _decoded(fields)) for msg_id, fields in messages]
        raw_fields = dict(messages)
        quarantined: list[tuple[str, dict[str, Any], str]] = []

        def quarantine(event_id: str, event: Any, reason: str) -> dict[str, Any]:
            quarantined.append((event_id, raw_fields[event_id], reason))
            return quarantine_event(event_id, event, reason)

        self.guard()
        with tracing.span("qgate.audit.append", events=len(events)):
            written = self.chain.append_batch(events, quarantine)
        ids = [msg_id for msg_id, _ in messages]
        pipe = self.redis.pipeline()
        for event_id, fields, reason in quarantined:
            pipe.xadd(DEAD_LETTERS, {**_as_text(fields), "qgate_stream_id": event_id, "qgate_reason": reason})
            log.error("audit_event_quarantined", stream_id=event_id, reason=reason)
        if quarantined:
            pipe.hincrby(COUNTERS, "audit_quarantined", len(quarantined))
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
        self.guard()
        self.checkpoints.save(size, signer.kid, sign_checkpoint(body, signer))
        self.checkpointed, self.checkpointed_at = size, time.monotonic()
        try:  # for /metrics (qgate_audit_checkpoint_age_seconds): the ingress may not see the log's disk
            self.redis.hset(GAUGES, AUDIT_CHECKPOINT_AT, time.time())
        except redis_lib.RedisError:
            pass
        log.info("audit_checkpoint", size=size, kid=signer.kid)


def _job_id(line: bytes) -> str | None:
    return decode_line(line).get("job_id")


class _Undecodable:
    """A stream message whose ``event`` field is not a JSON object: quarantined like any bad event."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decoded(fields: dict[Any, Any]) -> Any:
    try:
        return decode_event(fields)
    except Exception as exc:  # anything in the stream may be garbage; it is quarantined, never fatal
        return _Undecodable(f"unreadable event: {type(exc).__name__}")


def _as_text(fields: dict[Any, Any]) -> dict[str, str]:
    """A message's fields for the dead-letter stream, whatever bytes they held."""
    def text(value: Any) -> str:
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")
    return {text(k): text(v) for k, v in fields.items()}


def _safe_label(value: Any) -> str | None:
    """A job id or tenant taken over from a bad event only when it is plain short text."""
    if isinstance(value, str) and len(value) <= 128 and value.isprintable() and value.isascii():
        return value
    return None


def quarantine_event(event_id: str, event: Any, reason: str) -> dict[str, Any]:
    """The entry written in place of an event the log cannot hold: where the original waits
    (its stream id in the dead-letter stream) and why, with its job and tenant when they are readable."""
    if isinstance(event, _Undecodable):
        reason, event = event.reason, {}
    source = event if isinstance(event, dict) else {}
    return {"type": "audit.quarantined", "ts": round(time.time(), 6), "job_id": _safe_label(source.get("job_id")),
            "tenant": _safe_label(source.get("tenant")),
            "data": {"stream_id": event_id, "dead_letter_stream": DEAD_LETTERS, "reason": reason,
                     "original_type": _safe_label(source.get("type"))}}


class LockLost(RuntimeError):
    """Another writer holds the lock now (ours expired while we were paused or cut off)."""


def _hold(lock: Any) -> None:
    """Renew the lock for a full TTL, atomically and only if it is still ours; else LockLost."""
    try:
        lock.reacquire()
    except LockError:
        raise LockLost("audit writer lock lost; another writer may hold it") from None


def _acquire(lock: Any, stop: threading.Event) -> bool:
    """Wait as a standby until the lock is ours (True) or we are told to stop (False)."""
    waited = False
    while not stop.is_set():
        try:
            if lock.acquire(blocking=False):
                return True
        except redis_lib.RedisError as exc:
            log.warning("audit_channel_unavailable", error=f"{type(exc).__name__}: {exc}")
        if not waited:
            log.info("audit_writer_waiting_for_lock")
            waited = True
        stop.wait(1.0)
    return False


def _open_writer(redis: Any, settings: Settings, lock: Any, stop: threading.Event) -> AuditWriter | None:
    """Open the log once its file lock is free, holding the Redis lock meanwhile."""
    while not stop.is_set():
        try:
            return AuditWriter(redis, settings, guard=lambda: _hold(lock))
        except LogBusy:
            log.warning("audit_log_busy", path=str(settings.audit_path))
            _hold(lock)
            stop.wait(0.5)
    return None


def _serve(redis: Any, settings: Settings, lock: Any, stop: threading.Event) -> None:
    """Write while we hold the lock; returns on stop, raises LockLost when the lock is gone."""
    ensure_group(redis)
    writer = _open_writer(redis, settings, lock, stop)
    if writer is None:
        return
    if writer.chain.repaired_bytes:
        log.warning("audit_torn_tail_repaired", bytes=writer.chain.repaired_bytes)
    log.info("audit_writer_started", path=str(settings.audit_path), next_seq=writer.chain.size,
             kid=writer.chain.signer.kid)
    cursor, backoff = "0", 0.5
    try:
        while not stop.is_set():
            try:
                _hold(lock)
                writer.maybe_rotate()
                cursor = writer.drain_once(cursor)
                writer.checkpoint()
                backoff = 0.5
                if 0 < writer.last_batch < BATCH:
                    stop.wait(GROUP_COMMIT_S)
            except redis_lib.RedisError as exc:
                log.warning("audit_channel_unavailable", error=f"{type(exc).__name__}: {exc}")
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                cursor = "0"
        writer.checkpoint(force=writer.chain.size != writer.checkpointed)
    finally:
        writer.close()
        log.info("audit_writer_stopped", next_seq=writer.chain.size)


def _count_append_failure(redis: Any) -> None:
    """qgate_audit_append_failures: counted (best effort) before the process ends on a failed write."""
    try:
        redis.hincrby(COUNTERS, "audit_append_failures", 1)
    except redis_lib.RedisError:
        pass


def run(redis: Any, settings: Settings, stop: threading.Event | None = None) -> None:
    """Be the writer, or a standby until the writer's lock is free, until ``stop`` is set.

    An OSError (a failed write or fsync) still ends the process: the log must never skip a batch, and
    the supervisor restarts the writer, which repairs a torn tail and rereads unacknowledged events.
    """
    stop = stop or threading.Event()
    lock = redis.lock(LOCK, timeout=LOCK_TTL_S, thread_local=False)
    while not stop.is_set():
        if not _acquire(lock, stop):
            return
        try:
            _serve(redis, settings, lock, stop)
        except OSError:
            _count_append_failure(redis)
            raise
        except LockLost as exc:
            log.warning("audit_writer_standby", reason=str(exc))
        except redis_lib.RedisError as exc:
            log.warning("audit_channel_unavailable", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
    try:
        lock.release()
    except (LockError, redis_lib.RedisError):  # not ours any more, or Redis away: it expires by itself
        pass


def main() -> None:
    from workers.connections import get_redis
    from settings import get_settings
    from telemetry.logging import configure_logging

    configure_logging()
    tracing.configure("qgate-audit")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(get_redis(), get_settings(), stop)
