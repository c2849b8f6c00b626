"""A quantum provider reached over HTTPS with mutual TLS, through a small REST shape (see the README).

``GET /v1/backends/<name>`` describes the device (qubits, basis gates, couplings, shot cap, calibration);
``POST /v1/jobs`` queues an ISA circuit as OpenQASM 3 and answers its ``id``; ``GET /v1/jobs/<id>`` gives
its ``status`` (and ``counts`` once ``DONE``, ``error`` once ``FAILED``); ``DELETE /v1/jobs/<id>`` cancels.

The connection is the adapter's own part; the rest is the `QpuAdapter` base. TLS comes from
`solvers.provider_tls`: our certificate and key, the provider's CA pinned, TLS 1.2+, hostname checked,
reloaded when the files change. Each job keeps the context it was submitted with, so a rotation never
moves a job in flight to another identity. Every request's timeout is the smaller of ``timeout_s`` and
what is left of the attempt (`QpuAdapter.attempt`), so a provider that does not answer costs an attempt
its own time only. TLS failures become `QpuError` reasons that say which side refused whom.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from solvers.aer import normalise_counts
from solvers.problems import canonical_json
from solvers.provider_tls import ReloadingClientTls, TlsFiles, closed_after_handshake, tls_failure
from solvers.qpu_base import Price, ProviderQueue, QpuAdapter, QpuError, lane_state, lane_states

HTTP_PRICE = Price(0.0, 0.0, "configure per contract")
DEFAULT_TIMEOUT_S = 10.0
CANCEL_GRACE_S = 0.2  # within the 0.25 s the attempt's alarm allows past its deadline
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_CALIBRATION_BYTES = 64 * 1024
_JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BITS = re.compile(r"[01]{1,128}")

_STATES = lane_states(queued=("QUEUED",), running=("RUNNING",), done=("DONE",), failed=("FAILED",),
                      cancelled=("CANCELLED",))


def job_state(status: Any) -> str:
    """The lane state for a job ``status`` of the REST shape."""
    return lane_state(_STATES, status, "job status")


@dataclass(frozen=True)
class _Job:
    """A submitted job: the provider's id and the TLS context it was submitted with."""

    id: str
    context: ssl.SSLContext


class HttpQpu(QpuAdapter):
    """One device ``backend_name`` of the provider at ``base_url`` (``https://host[:port]``), over mutual TLS.

    ``tls`` gives the current client context (`ReloadingClientTls`). ``timeout_s`` bounds each request;
    inside an attempt the attempt's deadline bounds it too. The device description is fetched on first
    use and again after ``backend_ttl_s``.
    """

    provider_label = "mTLS provider"
    poll_interval_s = 0.2

    def __init__(self, base_url: str, backend_name: str, tls: ReloadingClientTls, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, backend_ttl_s: float = 60.0, max_depth: int = 2000,
                 price: Price | None = None, redact: tuple[str, ...] = ()) -> None:
        url = urlsplit(base_url)
        if url.scheme != "https" or not url.hostname or url.path not in ("", "/") or url.query:
            raise ValueError("the provider URL must be https://host[:port] with no path")
        if not backend_name:
            raise ValueError("a backend name is required")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        super().__init__(max_depth=max_depth, redact=(*redact, *tls.files.directories()))
        self.host, self.port = url.hostname, url.port or 443
        self.backend_name = backend_name
        self.tls = tls
        self.timeout_s = timeout_s
        self.backend_ttl_s = backend_ttl_s
        self.price = price or HTTP_PRICE
        self._local = threading.local()
        self._info_lock = threading.Lock()
        self._info: tuple[float, dict[str, Any]] | None = None
        self._target: tuple[str, Any] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> HttpQpu:
        """The adapter named by ``QGATE_QPU_HTTP_URL``, ``QGATE_QPU_HTTP_BACKEND`` and the three
        ``QGATE_QPU_HTTP_{CERT,KEY,CA}_FILE`` (optional: ``QGATE_QPU_HTTP_TIMEOUT_S``)."""
        env = os.environ if env is None else env
        names = ("QGATE_QPU_HTTP_URL", "QGATE_QPU_HTTP_BACKEND", "QGATE_QPU_HTTP_CERT_FILE",
                 "QGATE_QPU_HTTP_KEY_FILE", "QGATE_QPU_HTTP_CA_FILE")
        missing = [name for name in names if not env.get(name, "").strip()]
        if missing:
            raise ValueError(f"set {', '.join(missing)}")
        raw_timeout = env.get("QGATE_QPU_HTTP_TIMEOUT_S", "").strip()
        try:
            timeout_s = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"QGATE_QPU_HTTP_TIMEOUT_S must be a number, got {raw_timeout!r}") from None
        files = TlsFiles(Path(env["QGATE_QPU_HTTP_CERT_FILE"]), Path(env["QGATE_QPU_HTTP_KEY_FILE"]),
                         Path(env["QGATE_QPU_HTTP_CA_FILE"]))
        return cls(env["QGATE_QPU_HTTP_URL"].strip(), env["QGATE_QPU_HTTP_BACKEND"].strip(),
                   ReloadingClientTls(files), timeout_s=timeout_s, **options)

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self.backend_name

    @property
    def version(self) -> str:
        return f"qgate-http-v1 {self.host}"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend_name, "host": self.host, "port": self.port}

    # ------------------------------------------------------------------ the attempt and its connections

    @contextmanager
    def attempt(self, deadline: float) -> Iterator[None]:
        """Bound this thread's requests by ``deadline`` (monotonic) and pick the TLS context once: a
        rotation is seen at most once per attempt, and the whole attempt uses one identity."""
        self._local.deadline = deadline
        self._local.context = self._context()
        try:
            yield
        finally:
            self._local.deadline = None
            self._local.context = None

    def _context(self) -> ssl.SSLContext:
        pinned = getattr(self._local, "context", None)
        if pinned is not None:
            return pinned
        with self.provider_errors("TLS configuration"):
            return self.tls.current()

    def _timeout(self, what: str) -> float:
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return self.timeout_s
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.provider_label} {what}: the attempt's time limit was reached")
        return min(self.timeout_s, left)

    def _request(self, method: str, path: str, what: str, body: dict[str, Any] | None = None,
                 context: ssl.SSLContext | None = None, accept: tuple[int, ...] = ()) -> tuple[int, Any]:
        """One HTTPS exchange; the status and the decoded JSON body (None when empty). A status of 400
        or more is a `QpuError` unless it is one of ``accept``."""
        timeout = self._timeout(what)
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                 context=context or self._context())
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "qgate"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        handshake_done = False
        try:
            connection.connect()  # TCP and the TLS handshake: the server's certificate, the version
            handshake_done = True
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
        except ssl.SSLError as exc:
            reason = tls_failure(exc, self.host, after_handshake=handshake_done)
            raise QpuError(self.redact(f"{self.provider_label} {what}: TLS: {reason}")) from None
        except TimeoutError:
            raise TimeoutError(f"{self.provider_label} {what}: no answer within {timeout:.3g} s") from None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
            if not handshake_done:
                raise self._error(f"{what}: connection failed", exc) from None
            reason = closed_after_handshake(exc)
            raise QpuError(self.redact(f"{self.provider_label} {what}: TLS: {reason}")) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(f"{what}: connection failed", exc) from None
        finally:
            connection.close()
        if len(data) > MAX_RESPONSE_BYTES:
            raise QpuError(f"{self.provider_label} {what}: the answer exceeds {MAX_RESPONSE_BYTES} bytes")
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            raise QpuError(f"{self.provider_label} {what}: HTTP {response.status} with a body that is not JSON") \
                from None
        if response.status >= 400 and response.status not in accept:
            error = decoded.get("error") if isinstance(decoded, dict) else None
            detail = f": {str(error)[:200]}" if error else ""
            raise QpuError(self.redact(f"{self.provider_label} {what}: HTTP {response.status}{detail}"))
        return response.status, decoded

    # ------------------------------------------------------------------ the device

    def backend_info(self) -> dict[str, Any]:
        """``GET /v1/backends/<name>``, cached for ``backend_ttl_s``."""
        with self._info_lock:
            if self._info is not None and time.monotonic() - self._info[0] < self.backend_ttl_s:
                return self._info[1]
        _, info = self._request("GET", f"/v1/backends/{quote(self.backend_name, safe='')}",
                                f"description of {self.backend_name}")
        if not isinstance(info, dict) or not isinstance(info.get("num_qubits"), int) or \
                not isinstance(info.get("basis_gates"), list):
            raise QpuError(f"{self.provider_label} described {self.backend_name} without num_qubits "
                           "and basis_gates")
        with self._info_lock:
            self._info = (time.monotonic(), info)
        return info

    def queue_info(self) -> ProviderQueue | None:
        """The backend description's optional ``pending_jobs`` and ``estimated_wait_s`` (cached with it)."""
        info = self.backend_info()
        pending, wait = info.get("pending_jobs"), info.get("estimated_wait_s")
        pending = pending if isinstance(pending, int) and not isinstance(pending, bool) and pending >= 0 else None
        wait = float(wait) if isinstance(wait, (int, float)) and not isinstance(wait, bool) and 0 <= wait < 1e7 \
            else None
        if pending is None and wait is None:
            return None
        return ProviderQueue(source=f"{self.provider_label} {self.backend_name}: backend description",
                             pending_jobs=pending, wait_s=wait)

    def transpile_target(self) -> dict[str, Any]:
        from qiskit.transpiler import CouplingMap, Target

        info = self.backend_info()
        key = hashlib.sha256(canonical_json({k: info.get(k) for k in
                                             ("num_qubits", "basis_gates", "coupling_map")})).hexdigest()
        if self._target is None or self._target[0] != key:
            edges = info.get("coupling_map")
            with self.provider_errors(f"description of {self.backend_name} is not a device target"):
                target = Target.from_configuration(
                    basis_gates=[str(gate) for gate in info["basis_gates"]], num_qubits=info["num_qubits"],
                    coupling_map=CouplingMap([[int(a), int(b)] for a, b in edges]) if edges else None)
            self._target = (key, target)
        return {"target": self._target[1]}

    def device_limits(self) -> tuple[int | None, int | None]:
        """From the description; (None, None) while the provider cannot be reached, so that a worker
        starts and publishes its lane, and the attempt itself reports why the provider refused."""
        try:
            info = self.backend_info()
        except (QpuError, TimeoutError):
            return None, None
        max_shots = info.get("max_shots")
        return info["num_qubits"], max_shots if isinstance(max_shots, int) else None

    def calibration(self) -> dict[str, Any]:
        info = self.backend_info()
        record: dict[str, Any] = {
            "backend": self.backend_name,
            "provider": f"https://{self.host}:{self.port}",
            "kind": "mTLS REST provider",
            "backend_version": str(info.get("version", "")),
            "num_qubits": info["num_qubits"],
            "properties_sha256": hashlib.sha256(canonical_json(info)).hexdigest(),
        }
        calibration = info.get("calibration")
        if calibration is not None and len(canonical_json(calibration)) <= MAX_CALIBRATION_BYTES:
            record["calibration"] = calibration
        return record

    def run_provenance(self) -> dict[str, Any]:
        return {"mode": "device", "seeded": False, "reproducible": False,
                "note": "a remote provider: the seed is passed on, but shots are not reproducible from it"}

    # ------------------------------------------------------------------ jobs

    def submit(self, circuit: Any, shots: int, seed: int | None) -> str:
        from qiskit import qasm3

        with self.provider_errors(f"cannot write the circuit for {self.backend_name} as OpenQASM 3"):
            program = qasm3.dumps(circuit)
        context = self._context()
        body = {"qasm": program, "shots": shots, "backend": self.backend_name, "seed": seed}
        _, answer = self._request("POST", "/v1/jobs", f"submission to {self.backend_name}", body, context)
        job_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise QpuError(f"{self.provider_label} answered a submission to {self.backend_name} without a "
                           "usable job id")
        return self._remember(job_id, _Job(job_id, context))

    def _status(self, handle: str) -> dict[str, Any]:
        job: _Job = self._known(handle)
        _, answer = self._request("GET", f"/v1/jobs/{quote(job.id, safe='')}", f"status of job {handle}",
                                  context=job.context)
        if not isinstance(answer, dict):
            raise QpuError(f"{self.provider_label} status of job {handle}: not a JSON object")
        return answer

    def poll(self, handle: str) -> str:
        return job_state(self._status(handle).get("status"))

    def result(self, handle: str) -> dict[str, int]:
        answer = self._status(handle)
        state = job_state(answer.get("status"))
        if state == "failed":
            error = str(answer.get("error") or "no reason given")[:300]
            raise QpuError(self.redact(f"{self.provider_label} job {handle} on {self.backend_name} failed: "
                                       f"{error}"))
        if state != "done":
            raise self._not_done(handle, state)
        counts = answer.get("counts")
        if not isinstance(counts, dict) or not counts or not all(
                isinstance(key, str) and _BITS.fullmatch(key.replace(" ", "")) and isinstance(value, int)
                and value >= 0 for key, value in counts.items()):
            raise QpuError(f"{self.provider_label} job {handle}: counts are not bit strings with counts")
        return normalise_counts(counts)

    def cancel(self, handle: str) -> None:
        """Cancel, given `CANCEL_GRACE_S` past the attempt's deadline: the solver cancels a job exactly
        when its time is up, and the attempt's own alarm leaves that much room."""
        job: _Job = self._known(handle)
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None:
            self._local.deadline = max(deadline, time.monotonic() + CANCEL_GRACE_S)
        try:
            self._cancel_unfinished(handle, lambda: self._delete(job), "job")
        finally:
            if deadline is not None:
                self._local.deadline = deadline

    def _delete(self, job: _Job) -> None:
        """``DELETE``; 409 (the job finished between the poll and the cancel) is not an error."""
        self._request("DELETE", f"/v1/jobs/{quote(job.id, safe='')}", f"cancel of job {job.id}",
                      context=job.context, accept=(409,))
