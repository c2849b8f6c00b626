"""A whole qgate stack for tests: its own redis-server on a free port, real Celery worker processes per
lane, the webhook worker, the audit worker, the watchdog and gunicorn serving the app over real HTTP."""

from __future__ import annotations

import itertools
import secrets
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import redis
import requests
import requests.adapters

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LANES = ("qpu", "sim", "heuristic")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A child process in its own session, so that it and its children can be signalled together."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(5)
        self.signal_group(signal.SIGKILL)  # leftover pool children
        self._log.close()

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    _names = itertools.count(1)

    def __init__(self, base: Path, **env: str) -> None:
        self.base = base
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.audit_path = base / "var" / "audit" / "audit.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("QGATE_")}
        self.env.update({
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "QGATE_VAR_DIR": str(base / "var"),
            "QGATE_AUDIT_PATH": str(self.audit_path), "QGATE_WORKER_HEARTBEAT_S": "1",
            "QGATE_LEASE_GRACE_MS": "1500", "QGATE_CHECKPOINT_SECONDS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env,
        })
        self.redis_proc: subprocess.Popen | None = None
        self.web: Process | None = None
        self.workers: dict[str, Process] = {}
        self.worker_names: dict[str, str] = {}
        self.audit: Process | None = None
        self.watchdog: Process | None = None
        self.webhooks: Process | None = None

    # redis -----------------------------------------------------------------------------------------
    def start_redis(self) -> None:
        data = self.base / "redis"
        data.mkdir(exist_ok=True)
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (make test installs it)"
        self.redis_proc = subprocess.Popen(
            [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
             "--appendonly", "yes", "--logfile", str(self.logs / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._redis_answers, 10, "redis-server")

    def _redis_answers(self) -> bool:
        try:
            return bool(self.redis().ping())
        except redis.ConnectionError:
            return False

    def stop_redis(self) -> None:
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True, socket_connect_timeout=1)

    # processes -------------------------------------------------------------------------------------
    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def start_web(self) -> None:
        argv = [str(BIN / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"), "--bind",
                f"127.0.0.1:{self.http_port}", "--workers", "2", "--threads", "16", "wsgi:app"]
        self.web = Process("web", argv, self._env(None), self.logs)
        wait_for(self._web_answers, 60, "gunicorn")

    def _web_answers(self) -> bool:
        assert self.web is not None and self.web.alive(), self.web.tail() if self.web else "no web process"
        try:
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start_worker(self, lane: str, env: dict[str, str] | None = None, concurrency: int = 1,
                     queues: str | None = None, key: str | None = None) -> None:
        """A worker of ``lane`` consuming ``queues`` (default: the lane's interactive queue, then its own),
        kept under ``key`` (default: the lane) in ``self.workers``."""
        key = key or lane
        name = f"{key.replace('.', '-')}-{next(self._names)}@test"
        queues = queues or f"{lane}.interactive,{lane}"
        argv = [str(BIN / "celery"), "-A", "workers.app", "worker", "-Q", queues, "-n", name, "--concurrency",
                str(concurrency), "--pool", "prefork", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        self.workers[key] = Process(f"worker-{name}", argv, self._env(env), self.logs)
        self.worker_names[key] = name
        wait_for(lambda: self._worker_beating(lane, name, key), 90, f"{lane} worker {name}")

    def _worker_beating(self, lane: str, name: str, key: str | None = None) -> bool:
        assert self.workers[key or lane].alive(), self.workers[key or lane].tail()
        score = self.redis().zscore(f"qgate:lane:{lane}:alive", name)
        return score is not None and score > time.time()

    def stop_worker(self, lane: str) -> None:
        self.workers.pop(lane).stop()

    def kill_worker(self, lane: str) -> None:
        """SIGKILL the worker's whole process group: the main process and its pool children."""
        self.workers.pop(lane).kill()

    @contextmanager
    def worker_env(self, lane: str, **env: str) -> Iterator[None]:
        """Run ``lane``'s worker with extra environment (e.g. QGATE_FAULTS) inside the block."""
        self.stop_worker(lane)
        self.start_worker(lane, env)
        try:
            yield
        finally:
            if lane in self.workers:
                self.stop_worker(lane)
            self.start_worker(lane)

    def start_audit(self) -> None:
        self.audit = Process("audit", [str(BIN / "qgate"), "audit-worker"], self._env(None), self.logs)

    def stop_audit(self) -> None:
        assert self.audit is not None
        self.audit.stop()
        self.audit = None

    def kill_audit(self) -> None:
        assert self.audit is not None
        self.audit.kill()
        self.audit = None

    def start_watchdog(self) -> None:
        self.watchdog = Process("watchdog", [str(BIN / "qgate"), "watchdog"], self._env(None), self.logs)

    def start_webhooks(self) -> None:
        """The webhook worker (its own queue; its sweeper thread feeds it from the outbox)."""
        name = f"webhooks-{next(self._names)}@test"
        argv = [str(BIN / "celery"), "-A", "workers.app", "worker", "-Q", "webhooks", "-n", name, "--pool",
                "threads", "--concurrency", "4", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        self.webhooks = Process(f"worker-{name}", argv, self._env(None), self.logs)
        proc = self.webhooks

        def sweeping() -> bool:
            assert proc.alive(), proc.tail()
            score = self.redis().zscore("qgate:webhooks:alive", name)
            return score is not None and score > time.time()
        wait_for(sweeping, 90, f"webhook worker {name}")

    def kill_webhooks(self) -> None:
        """SIGKILL the webhook worker's whole process group."""
        assert self.webhooks is not None
        self.webhooks.kill()
        self.webhooks = None

    def start(self) -> "Stack":
        self.start_redis()
        self.start_audit()
        self.start_watchdog()
        for lane in LANES:
            self.start_worker(lane)
        self.start_webhooks()
        self.start_web()
        return self

    def stop(self) -> None:
        for proc in [self.web, *self.workers.values(), self.webhooks, self.audit, self.watchdog]:
            if proc is not None:
                proc.stop()
        self.stop_redis()

    # the API as a TMS uses it ----------------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "qgate"), *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)

    def create_client(self, tenant: str, scopes: str) -> dict[str, Any]:
        done = self.cli("clients", "create", "--tenant", tenant, "--scopes", scopes)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def token(self, client: dict[str, Any]) -> str:
        reply = requests.post(self.url + "/oauth/token", data={"grant_type": "client_credentials"},
                              auth=(client["client_id"], client["client_secret"]), timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()["access_token"]

    def headers(self, token: str, budget_ms: int | None = None, **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", **extra}
        if budget_ms is not None:
            headers["X-Latency-Budget-Ms"] = str(budget_ms)
        return headers

    def solve(self, token: str, body: Any, budget_ms: int | None = None, **headers: str) -> requests.Response:
        return requests.post(self.url + "/api/v1/quantum/solve", json=body,
                             headers=self.headers(token, budget_ms, **headers), timeout=120)

    def job(self, token: str, job_id: str) -> requests.Response:
        return requests.get(f"{self.url}/api/v1/jobs/{job_id}", headers=self.headers(token), timeout=10)

    def wait_job(self, token: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            body = self.job(token, job_id).json()
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None
        return wait_for(finished, timeout, f"job {job_id} to finish", interval=0.2)

    def audit_entries(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        data = self.audit_path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]  # a line the writer is still writing is not read yet
        return [json.loads(line) for line in whole.splitlines()]

    def wait_audited(self, job_id: str, event_type: str, timeout: float = 20) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            entries = [e for e in self.audit_entries() if e.get("job_id") == job_id]
            return entries if any(e["type"] == event_type for e in entries) else None
        return wait_for(found, timeout, f"{event_type} of {job_id} in the audit log", interval=0.2)

    def forget_lane_figures(self) -> None:
        """No fault drills, no lane telemetry, closed breakers: what the planner learnt is forgotten."""
        redis = self.redis()
        keys = [*redis.scan_iter("qgate:lane:*:tel:*"), *redis.scan_iter("qgate:lane:*:breaker*"), "qgate:faults",
                "qgate:metrics:gauges"]
        redis.delete(*keys)

    # chaos drills: faults a supervisor would see, and the restarts it would do --------------------
    def restart_redis(self, down_s: float = 2.0) -> None:
        """Stop Redis (SIGTERM: it writes its AOF out), keep it down ``down_s``, start it on the same port
        and data directory."""
        self.stop_redis()
        time.sleep(down_s)
        self.start_redis()

    def pause_redis(self, seconds: float) -> None:
        """SIGSTOP Redis for ``seconds``: connections stay open and every call hangs, then SIGCONT."""
        assert self.redis_proc is not None and self.redis_proc.poll() is None
        os.kill(self.redis_proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.redis_proc.pid, signal.SIGCONT)

    def kill_redis(self, down_s: float = 0.0) -> None:
        """SIGKILL Redis (no shutdown, no final AOF flush) and start it again on the same port and data
        directory, as a supervisor would; with appendfsync everysec it replays what its AOF holds."""
        assert self.redis_proc is not None
        try:
            self.redis_proc.kill()
        except ProcessLookupError:
            pass
        self.redis_proc.wait(10)
        time.sleep(down_s)
        self.start_redis()

    @staticmethod
    def pause_process(proc: Process, seconds: float) -> None:
        """SIGSTOP a process's whole group for ``seconds``, then SIGCONT."""
        proc.signal_group(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            proc.signal_group(signal.SIGCONT)

    def start_standby_audit(self) -> Process:
        """A second ``qgate audit-worker`` beside the first: it waits as a standby for the writer's lock."""
        self.audit_standby = Process("audit-standby", [str(BIN / "qgate"), "audit-worker"], self._env(None),
                                     self.logs)
        return self.audit_standby

    def kill_watchdog(self) -> None:
        assert self.watchdog is not None
        self.watchdog.kill()
        self.watchdog = None

    def processes(self) -> dict[str, Any]:
        """Every process of the stack by name (Redis as its Popen), for liveness checks."""
        procs: dict[str, Any] = {"redis": self.redis_proc, "web": self.web, "audit": self.audit,
                                 "watchdog": self.watchdog, "webhooks": self.webhooks}
        procs.update({f"worker-{lane}": proc for lane, proc in self.workers.items()})
        standby = getattr(self, "audit_standby", None)
        if standby is not None:
            procs["audit-standby"] = standby
        return {name: proc for name, proc in procs.items() if proc is not None}


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connects from a chosen local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


@contextmanager
def running_stack(base: Path, **env: str) -> Iterator[Stack]:
    """A started stack under ``base``, stopped on the way out (and when it fails to start)."""
    running = Stack(base, **env)
    try:
        running.start()
    except Exception:
        running.stop()
        raise
    try:
        yield running
    finally:
        running.stop()


def loopback_session() -> requests.Session:
    """A session speaking from a fresh loopback address (never 127.0.0.1), so that what counts per
    source address (failed logins) never spills over onto the other tests."""
    session = requests.Session()
    address = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    session.mount("http://", SourceAddressAdapter(address))
    session.address = address  # type: ignore[attr-defined]
    return session
