"""A local quantum provider behind mutual TLS, speaking the REST shape `solvers.qpu_http.HttpQpu` uses.

A threaded ``http.server`` whose sockets are wrapped in TLS with ``CERT_REQUIRED`` (the client must show a
certificate issued by ``client_ca``). Circuits (OpenQASM 3) run on Aer, ideal and seeded, so counts are
real; jobs are ``QUEUED`` until first looked at, then ``DONE`` (or held ``RUNNING`` while ``hold`` is
set). Every request is recorded with the client identity that made it (the certificate's e-mail or DNS
name), so tests can tell which certificate a request used. The TLS version range and cipher string are
parameters, for a server that only speaks versions older than the client accepts.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme

BACKEND = "stub_line5"
DESCRIPTION = {
    "name": BACKEND,
    "version": "1.0.0",
    "num_qubits": 5,
    "max_shots": 100_000,
    "basis_gates": ["cx", "rz", "sx", "x", "measure"],
    "coupling_map": [[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 2], [3, 4], [4, 3]],
    "calibration": {"updated_at": "2026-01-01T00:00:00Z", "readout_error": [0.01, 0.02, 0.01, 0.02, 0.01]},
    "pending_jobs": 7,
    "estimated_wait_s": 42.5,
}


@dataclass
class StubJob:
    id: str
    qasm: str
    shots: int
    seed: int | None
    identity: str
    status: str = "QUEUED"
    counts: dict[str, int] | None = None
    error: str | None = None


@dataclass
class Seen:
    method: str
    path: str
    identity: str


def identity_of(peer: dict[str, Any] | None) -> str:
    """The client's e-mail or DNS name from its certificate's subjectAltName."""
    for kind, value in (peer or {}).get("subjectAltName", ()):
        if kind in ("email", "DNS"):
            return value
    return "?"


_SIMULATING = threading.Lock()


def run_counts(qasm: str, shots: int, seed: int | None) -> dict[str, int]:
    """Ideal, seeded counts; one circuit at a time (qiskit crashed when first used from two handler
    threads at once)."""
    from qiskit import qasm3
    from qiskit_aer import AerSimulator

    with _SIMULATING:
        circuit = qasm3.loads(qasm)
        run = AerSimulator().run(circuit, shots=shots, seed_simulator=1 + (seed or 0))
        return dict(run.result().get_counts(0))


@dataclass
class ProviderStub:
    """``with ProviderStub(server_cert, client_ca) as stub:`` serves on 127.0.0.1 until the block ends."""

    server_cert: trustme.LeafCert
    client_ca: trustme.CA | tuple[trustme.CA, ...]
    minimum_version: ssl.TLSVersion | None = None
    maximum_version: ssl.TLSVersion | None = None
    ciphers: str | None = None
    fail_jobs: bool = False
    hold: threading.Event = field(default_factory=threading.Event)  # set: jobs stay RUNNING
    seen: list[Seen] = field(default_factory=list)
    jobs: dict[str, StubJob] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ serving

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: a downgraded server is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            if self.minimum_version is not None:
                context.minimum_version = self.minimum_version
            if self.maximum_version is not None:
                context.maximum_version = self.maximum_version
        if self.ciphers:
            context.set_ciphers(self.ciphers)
        self.server_cert.configure_cert(context)
        for ca in self.client_ca if isinstance(self.client_ca, tuple) else (self.client_ca,):
            ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def __enter__(self) -> ProviderStub:
        import qiskit.qasm3  # noqa: F401  imported here, in the caller's thread, not first in a handler's
        import qiskit_aer  # noqa: F401

        context, stub = self.context(), self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = self.socket.accept()
                sock.settimeout(5)
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # refused handshakes are what several tests are about

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def do_DELETE(self) -> None:
                stub._handle(self, "DELETE")

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="mtls-provider-stub", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    # ------------------------------------------------------------------ the REST shape

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        identity = identity_of(handler.connection.getpeercert())
        with self._lock:
            self.seen.append(Seen(method, handler.path, identity))
        status, body = self._answer(handler, method, identity)
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, identity: str) -> tuple[int, Any]:
        parts = handler.path.strip("/").split("/")
        if method == "GET" and parts[:2] == ["v1", "backends"] and len(parts) == 3:
            return (200, DESCRIPTION) if parts[2] == BACKEND else (404, {"error": "no such backend"})
        if method == "POST" and parts == ["v1", "jobs"]:
            body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
            if body.get("backend") != BACKEND:
                return 404, {"error": "no such backend"}
            job = StubJob(f"job-{next(self._ids)}", body["qasm"], int(body["shots"]), body.get("seed"), identity)
            with self._lock:
                self.jobs[job.id] = job
            return 201, {"id": job.id}
        if parts[:2] == ["v1", "jobs"] and len(parts) == 3:
            job = self.jobs.get(parts[2])
            if job is None:
                return 404, {"error": "no such job"}
            if method == "DELETE":
                return self._cancel(job)
            if method == "GET":
                self._advance(job)
                answer: dict[str, Any] = {"id": job.id, "status": job.status}
                if job.counts is not None:
                    answer["counts"] = job.counts
                if job.error is not None:
                    answer["error"] = job.error
                return 200, answer
        return 404, {"error": "not found"}

    def _advance(self, job: StubJob) -> None:
        with self._lock:
            if job.status == "QUEUED":
                job.status = "RUNNING"
                return
            if job.status != "RUNNING" or self.hold.is_set():
                return
        if self.fail_jobs:
            job.error, job.status = "calibration in progress", "FAILED"
            return
        job.counts, job.status = run_counts(job.qasm, job.shots, job.seed), "DONE"

    def _cancel(self, job: StubJob) -> tuple[int, Any]:
        with self._lock:
            self.deleted.append(job.id)
            if job.status in ("DONE", "FAILED", "CANCELLED"):
                return 409, {"error": f"job is {job.status}"}
            job.status = "CANCELLED"
        return 202, {"id": job.id, "status": "CANCELLED"}
