"""The policy in force for a process: loaded at start, reloaded when its files change, never opened by a bad one.

Why poll the files rather than keep the bundle in Redis: the policy is an operator's file under version
control (like the Procfile), every process reads the same path, and a stat of two files once a second is
free; each process compiles what it reads, so there is nothing to distribute. A change is seen when a
file's (inode, mtime, size) differs, which also catches an atomic rename. Processes agree on what is in
force through the audit: each load names its bundle's sha256, and ``policy.changed`` is written once
fleet-wide per change (GETSET of ``qgate:policy:current``), with the previous hash, the file owner, the
host and the paths.

An unreadable or invalid policy never opens the gate: the last good bundle stays in force, the error is
logged at error level each time the files change again, and ``qgate_policy_reload_failures`` counts it.
With no good policy at all at start, ``PolicySource`` raises: the ingress refuses to start (a gateway
that cannot decide who may use which lane must not take jobs).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from audit.channel import emit
from policy.engine import COMPILE_TIMEOUT_S, Decision, PolicyBundle, PolicyError

CURRENT_KEY = "qgate:policy:current"
FAILURES_FIELD = "policy_reload_failures"


def _signature(path: Path) -> tuple[Any, ...]:
    paths = sorted(path.glob("*.rego")) if path.is_dir() else [path]
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError as exc:
            out.append((str(p), "missing", exc.errno))
    return tuple(out)


def _owner(path: Path) -> str:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError, ImportError):
        return "unknown"


class PolicySource:
    """The current bundle of one (policy, data) pair of files, checked at most every ``poll_s`` seconds."""

    def __init__(self, policy_path: Path, data_path: Path, *, redis: Any = None, log: Any = None,
                 poll_s: float = 1.0, validate: Callable[[PolicyBundle], None] | None = None,
                 compile_timeout_s: float = COMPILE_TIMEOUT_S) -> None:
        self.compile_timeout_s = compile_timeout_s
        self.policy_path, self.data_path = Path(policy_path), Path(data_path)
        self.redis, self.log, self.poll_s, self.validate = redis, log, poll_s, validate
        self._lock = threading.Lock()
        self._checked = 0.0
        self._signature = self._stat()
        self.bundle = self._load()  # raises PolicyError: no good policy, no start
        self.last_error: str | None = None
        self._announce(None)

    def _stat(self) -> tuple[Any, ...]:
        return _signature(self.policy_path) + _signature(self.data_path)

    def _load(self) -> PolicyBundle:
        bundle = PolicyBundle.load(self.policy_path, self.data_path, compile_timeout_s=self.compile_timeout_s)
        if self.validate is not None:
            self.validate(bundle)
        return bundle

    def current(self) -> PolicyBundle:
        """The bundle in force, reloading first when the files changed since the last look."""
        now = time.monotonic()
        if now - self._checked < self.poll_s:
            return self.bundle
        with self._lock:
            if now - self._checked < self.poll_s:
                return self.bundle
            self._checked = now
            signature = self._stat()
            if signature == self._signature:
                return self.bundle
            self._signature = signature
            previous = self.bundle
            try:
                self.bundle = self._load()
            except Exception as exc:  # whatever a new file does, the last good policy stays in force
                self._failed(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
                return self.bundle
            self.last_error = None
            if self.bundle.sha256 != previous.sha256:
                self._announce(previous.sha256)
            return self.bundle

    def decide(self, policy_input: Mapping[str, Any]) -> Decision:
        return self.current().evaluate(policy_input)

    def _failed(self, error: str) -> None:
        self.last_error = error
        if self.log is not None:
            self.log.error("policy_reload_failed", error=error[:500], in_force=self.bundle.sha256,
                           policy=str(self.policy_path), data=str(self.data_path))
        if self.redis is not None:
            try:
                from telemetry.metrics import COUNTERS

                self.redis.hincrby(COUNTERS, FAILURES_FIELD, 1)
            except Exception:  # the metric is best effort; the log line above is the alarm
                pass

    def _announce(self, previous: str | None) -> None:
        """Audit a policy that differs from the one the fleet last recorded (once fleet-wide)."""
        if self.log is not None:
            self.log.info("policy_loaded", sha256=self.bundle.sha256, previous=previous)
        if self.redis is None:
            return
        try:
            recorded = self.redis.getset(CURRENT_KEY, self.bundle.sha256)
            if recorded == self.bundle.sha256:
                return
            emit(self.redis, "policy.changed", sha256=self.bundle.sha256, previous=recorded,
                 policy=str(self.policy_path), data=str(self.data_path), owner=_owner(self.policy_path),
                 host=socket.gethostname(), pid=os.getpid())
        except Exception as exc:  # Redis away at start: the next change is audited; the policy is still in force
            if self.log is not None:
                self.log.warning("policy_change_not_audited", error=f"{type(exc).__name__}: {exc}")
