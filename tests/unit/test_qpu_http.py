"""The mTLS REST provider adapter against a local provider stub (tests/mtls_provider.py) with trustme
certificates: jobs run end to end, each TLS failure mode fails the attempt with its reason and the job
falls back to the next lane, certificates rotate without moving a job in flight, cancel reaches DELETE,
and requests are bounded by the attempt's time limit."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fakeredis
import pytest
import trustme

from jobs import model
from jobs.store import JobStore
from orchestrator.service import JobService, ServiceConfig, Submission
from routing.plan import LaneStatus
from solvers.base import LaneLimits
from solvers.circuits import parse_qasm
from solvers.problems import parse_problem
from solvers.provider_tls import ReloadingClientTls, TlsConfigError, TlsFiles, request_reload
from solvers.qpu import QpuCircuitSolver, QpuError
from solvers.qpu_http import HttpQpu, job_state
from tests.mtls_provider import BACKEND, ProviderStub

X_ON_0 = {"kind": "circuit", "shots": 200,
          "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3]; x q[0]; measure q -> c;'}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


def write_identity(directory: Path, ca: trustme.CA, leaf: trustme.LeafCert) -> TlsFiles:
    """The three PEM files, each replaced atomically (a new inode), as a rotation would."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "client.pem", directory / "client.key", directory / "provider-ca.pem")
    for path, data in ((files.cert_file, b"".join(blob.bytes() for blob in leaf.cert_chain_pems)),
                       (files.key_file, leaf.private_key_pem.bytes()), (files.ca_file, ca.cert_pem.bytes())):
        scratch = path.with_suffix(".new")
        scratch.write_bytes(data)
        os.replace(scratch, path)
    return files


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> TlsFiles:
    return write_identity(tmp_path / "tls", ca, ca.issue_cert("qgate-a@example.test"))


def adapter(stub: ProviderStub, files: TlsFiles, **options: Any) -> HttpQpu:
    return HttpQpu(stub.url, BACKEND, ReloadingClientTls(files), **options)


def solve(qpu: HttpQpu, time_limit_s: float = 20.0, problem: dict[str, Any] = X_ON_0) -> Any:
    return QpuCircuitSolver(qpu, poll_interval_s=0.01).solve(parse_problem(problem), time_limit_s=time_limit_s,
                                                            seed=3)


def fast(qpu: HttpQpu) -> HttpQpu:
    qpu.poll_interval_s = 0.01
    return qpu


# ---------------------------------------------------------------- jobs run


def test_a_job_runs_end_to_end_over_mutual_tls(server_cert: trustme.LeafCert, ca: trustme.CA,
                                               files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        qpu = fast(adapter(stub, files))
        solution = solve(qpu)
    assert solution.result["counts"] == {"001": 200}  # qubit 0 flipped: qiskit's bit order kept
    assert solution.details["backend"] == BACKEND and solution.details["job"] == "job-1"
    snapshot = solution.calibration
    assert snapshot["kind"] == "mTLS REST provider" and snapshot["num_qubits"] == 5
    assert snapshot["calibration"]["updated_at"] == "2026-01-01T00:00:00Z" and len(snapshot["sha256"]) == 64
    assert [(s.method, s.path) for s in stub.seen][:2] == [("GET", f"/v1/backends/{BACKEND}"), ("POST", "/v1/jobs")]
    assert {s.identity for s in stub.seen} == {"qgate-a@example.test"}
    assert stub.jobs["job-1"].qasm.startswith("OPENQASM 3.0;") and "$" in stub.jobs["job-1"].qasm
    assert qpu.limits() == LaneLimits(max_qubits=5, max_depth=2000, max_shots=100_000)


def test_the_providers_queue_figure_comes_from_its_backend_description(server_cert: trustme.LeafCert,
                                                                       ca: trustme.CA, files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        info = adapter(stub, files).queue_info()
    assert info is not None and (info.pending_jobs, info.wait_s) == (7, 42.5)
    assert info.source == f"mTLS provider {BACKEND}: backend description"


def test_a_job_the_provider_fails_is_a_qpu_error_with_its_reason(server_cert: trustme.LeafCert, ca: trustme.CA,
                                                                  files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca, fail_jobs=True) as stub:
        with pytest.raises(QpuError, match=r"job job-1 on stub_line5 failed: calibration in progress"):
            solve(fast(adapter(stub, files)))


def test_job_states_of_the_rest_shape() -> None:
    assert [job_state(s) for s in ("QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED")] == \
        ["queued", "running", "done", "failed", "cancelled"]
    with pytest.raises(QpuError, match="unrecognised job status 'LOST'"):
        job_state("LOST")


# ---------------------------------------------------------------- TLS failure modes


def downgraded_server(server_cert: trustme.LeafCert, ca: trustme.CA) -> ProviderStub:
    """A server that speaks TLS 1.0 and 1.1 only (OpenSSL allows it at security level 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        oldest, newest = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    return ProviderStub(server_cert, ca, minimum_version=oldest, maximum_version=newest,
                        ciphers="DEFAULT:@SECLEVEL=0")


@dataclass
class Mode:
    """One failure: the stub to run and the client files to use; ``reason`` is what the attempt says."""

    name: str
    reason: str


MODES = [
    # TLS 1.3: the alert, or (when the server's close resets the connection first) the close itself
    Mode("wrong client certificate", r"TLS: the provider rejected our client certificate \((TLSV1_ALERT_UNKNOWN_CA|"
                                     r"it closed the connection after the handshake: \w+)\)"),
    Mode("unknown server CA", r"TLS: unknown server CA: the provider's certificate is not issued by the pinned CA"),
    Mode("wrong hostname", r"TLS: wrong hostname: the provider's certificate is not valid for 'localhost'"),
    Mode("downgraded TLS version", r"TLS: TLS version: the provider offers no protocol version at or above "
                                   r"TLS 1.2 \(TLSV1_ALERT_PROTOCOL_VERSION\)"),
]


@contextlib.contextmanager
def failing(mode: Mode, tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert,
            files: TlsFiles) -> Iterator[HttpQpu]:
    """An adapter facing ``mode``; everything else as in the working setup."""
    other = trustme.CA()
    stub, client_files = ProviderStub(server_cert, ca), files
    if mode.name == "wrong client certificate":
        client_files = write_identity(tmp_path / "other", ca, other.issue_cert("qgate-a@example.test"))
        client_files = TlsFiles(client_files.cert_file, client_files.key_file, files.ca_file)
    elif mode.name == "unknown server CA":
        stub = ProviderStub(other.issue_cert("localhost", "127.0.0.1"), ca)
    elif mode.name == "wrong hostname":
        stub = ProviderStub(ca.issue_cert("provider.elsewhere.test"), ca)
    elif mode.name == "downgraded TLS version":
        stub = downgraded_server(server_cert, ca)
    with stub:
        yield fast(adapter(stub, client_files))


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name)
def test_each_tls_failure_fails_the_job_submission_with_its_reason(mode: Mode, tmp_path: Path, ca: trustme.CA,
                                                                   server_cert: trustme.LeafCert,
                                                                   files: TlsFiles) -> None:
    with failing(mode, tmp_path, ca, server_cert, files) as qpu:
        assert qpu.limits().max_qubits is None  # the worker still starts; the attempt says why
        with pytest.raises(QpuError, match=mode.reason) as caught:
            solve(qpu)
    message = str(caught.value)
    assert str(tmp_path) not in message and "PRIVATE KEY" not in message


def test_the_downgraded_server_really_speaks_tls_1_1(ca: trustme.CA, server_cert: trustme.LeafCert,
                                                     files: TlsFiles) -> None:
    """The control for the version test: a client that allows TLS 1.1 gets through to the same server."""
    with downgraded_server(server_cert, ca) as stub, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        lax.minimum_version = ssl.TLSVersion.TLSv1
        lax.set_ciphers("DEFAULT:@SECLEVEL=0")
        lax.load_verify_locations(cafile=str(files.ca_file))
        lax.load_cert_chain(str(files.cert_file), str(files.key_file))
        with socket.create_connection(("127.0.0.1", stub.port), timeout=5) as raw:
            with lax.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == "TLSv1.1"


@dataclass
class Runtime:
    """The lane runtime of a qpu worker whose only solver is ``solver``, other lanes as given."""

    solver: Any

    def solvers(self, lane: str) -> list[Any]:
        return [self.solver]

    def limits(self, lane: str) -> LaneLimits:
        return LaneLimits()

    def time_limit(self, deadline: float, cancelled: Any = None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def before_solve(self, lane: str) -> None:
        pass


class Lanes:
    def statuses(self) -> dict[str, LaneStatus]:
        return {lane: LaneStatus(True, LaneLimits(max_qubits=24)) for lane in ("qpu", "sim", "heuristic")}


class Enqueuer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []

    def enqueue(self, job: model.Job) -> None:
        if job.current:
            self.sent.append((job.job_id, job.current.n, job.current.lane))

    def revoke(self, task_id: str) -> None:
        pass


@dataclass
class Caller:
    tenant: str = "acme"
    client_id: str = "qc_1"
    scopes: frozenset[str] = frozenset({"quantum:solve", "solver:qpu", "solver:sim", "solver:heuristic"})


def run_qpu_attempt(qpu: HttpQpu) -> tuple[str, model.Job]:
    """Submit ``X_ON_0`` with ``solver: auto`` and run its first attempt (on the qpu lane) with ``qpu``."""
    service = JobService(JobStore(fakeredis.FakeRedis(decode_responses=True), 3600), Enqueuer(),
                         ServiceConfig(lease_grace_ms=1000), Lanes())
    job, _ = service.submit(Caller(), Submission(parse_problem(X_ON_0), 20_000, {"solver": "auto", "seed": 7},
                                                 body={"problem": X_ON_0}))
    assert job.current.lane == "qpu"
    outcome = service.run_attempt("qpu", job.job_id, 1, "w1", Runtime(QpuCircuitSolver(qpu, poll_interval_s=0.01)))
    return outcome, service.job_of("acme", job.job_id)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name)
def test_each_tls_failure_fails_the_attempt_and_the_job_falls_back(mode: Mode, tmp_path: Path, ca: trustme.CA,
                                                                   server_cert: trustme.LeafCert,
                                                                   files: TlsFiles) -> None:
    with failing(mode, tmp_path, ca, server_cert, files) as qpu:
        outcome, job = run_qpu_attempt(qpu)
    tried = job.attempts[0]
    assert outcome == "failed" and tried.lane == "qpu" and tried.outcome == "failed"
    assert tried.reason.startswith("QpuError: mTLS provider ")
    assert re.search(mode.reason, tried.reason), tried.reason
    assert str(tmp_path) not in tried.reason
    assert job.status not in ("succeeded", "failed") and job.current.lane == "sim"


def test_a_working_provider_ends_the_job_on_the_qpu_lane(server_cert: trustme.LeafCert, ca: trustme.CA,
                                                         files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        outcome, job = run_qpu_attempt(fast(adapter(stub, files)))
    assert outcome == "succeeded" and job.status == "succeeded"
    assert job.provenance.calibration["sha256"] and job.attempts[0].lane == "qpu"


# ---------------------------------------------------------------- rotation


def test_rotation_moves_new_attempts_to_the_new_certificate_and_lets_a_job_in_flight_finish(
        tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert, files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        qpu = fast(adapter(stub, files))
        stub.hold.set()
        results: dict[str, Any] = {}

        def attempt(name: str) -> None:
            try:
                results[name] = solve(qpu)
            except Exception as exc:  # surfaced by the assertions below
                results[name] = exc

        first = threading.Thread(target=attempt, args=("first",))
        first.start()
        wait_until(lambda: stub.jobs.get("job-1") is not None and stub.jobs["job-1"].status == "RUNNING")
        write_identity(tmp_path / "tls", ca, ca.issue_cert("qgate-b@example.test"))  # the same paths
        second = threading.Thread(target=attempt, args=("second",))
        second.start()
        wait_until(lambda: "job-2" in stub.jobs)
        stub.hold.clear()
        first.join(20)
        second.join(20)
    assert results["first"].result["counts"] == results["second"].result["counts"] == {"001": 200}
    by_job = {job: {s.identity for s in stub.seen if s.path.endswith(f"/{job}")} for job in ("job-1", "job-2")}
    assert by_job == {"job-1": {"qgate-a@example.test"}, "job-2": {"qgate-b@example.test"}}
    assert (stub.jobs["job-1"].identity, stub.jobs["job-2"].identity) == ("qgate-a@example.test",
                                                                          "qgate-b@example.test")
    assert qpu.tls.loads == 2


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_job_keeps_the_identity_it_was_submitted_with_outside_its_attempt(
        tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert, files: TlsFiles) -> None:
    """A job polled or cancelled from outside the attempt that submitted it (no pinned context) still
    uses the context it was submitted with, not the one a rotation brought in since."""
    with ProviderStub(server_cert, ca) as stub:
        qpu = adapter(stub, files, backend_ttl_s=0.0)  # the description is fetched on each use
        circuit = qpu.transpile(parse_qasm(X_ON_0["qasm"]), 3)
        stub.hold.set()
        handle = qpu.submit(circuit, 10, 3)
        write_identity(tmp_path / "tls", ca, ca.issue_cert("qgate-b@example.test"))
        assert qpu.poll(handle) == "running"
        qpu.cancel(handle)
        qpu.backend_info()
    assert [(s.method, s.identity) for s in stub.seen if s.path == "/v1/jobs/job-1"] == \
        [("GET", "qgate-a@example.test"), ("GET", "qgate-a@example.test"), ("DELETE", "qgate-a@example.test")]
    assert stub.seen[-1].identity == "qgate-b@example.test"


def test_the_client_context_pins_the_ca_and_tls_1_2(files: TlsFiles) -> None:
    from solvers.provider_tls import client_context

    context = client_context(files)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [
        cert["subject"] for cert in [ssl._ssl._test_decode_cert(str(files.ca_file))]]  # the pinned CA only


def test_a_half_written_rotation_keeps_the_last_good_certificate(tmp_path: Path, ca: trustme.CA,
                                                                 files: TlsFiles) -> None:
    tls = ReloadingClientTls(files)
    first = tls.current()
    assert tls.current() is first and tls.loads == 1
    new = ca.issue_cert("qgate-b@example.test")
    scratch = files.cert_file.with_suffix(".new")
    scratch.write_bytes(b"".join(blob.bytes() for blob in new.cert_chain_pems))
    os.replace(scratch, files.cert_file)  # the certificate is new, the key still the old one
    assert tls.current() is first
    assert tls.last_error == "client certificate client.pem and key client.key do not match"
    write_identity(files.cert_file.parent, ca, new)
    second = tls.current()
    assert second is not first and tls.last_error is None and tls.loads == 2


def test_a_reload_request_rebuilds_the_context_without_a_file_change(files: TlsFiles) -> None:
    tls = ReloadingClientTls(files)
    first = tls.current()
    request_reload()  # what the worker's SIGHUP handler does
    assert tls.current() is not first and tls.loads == 2


def test_files_that_cannot_be_loaded_are_named_without_their_directory(tmp_path: Path, files: TlsFiles) -> None:
    missing = TlsFiles(files.cert_file, tmp_path / "secret-dir" / "absent.key", files.ca_file)
    with pytest.raises(TlsConfigError, match=r"^client key absent.key cannot be loaded: No such file or directory$"):
        ReloadingClientTls(missing).current()
    garbage = tmp_path / "tls" / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(TlsConfigError, match=r"^provider CA file garbage.pem cannot be loaded"):
        ReloadingClientTls(TlsFiles(files.cert_file, files.key_file, garbage)).current()
    qpu = HttpQpu("https://localhost:1", BACKEND, ReloadingClientTls(missing))
    with pytest.raises(QpuError) as caught:
        solve(qpu)
    assert str(caught.value) == ("mTLS provider TLS configuration: TlsConfigError: client key absent.key cannot "
                                 "be loaded: No such file or directory")
    assert str(tmp_path) not in repr(qpu)


# ---------------------------------------------------------------- cancel and time limits


def test_a_job_past_its_time_limit_is_cancelled_at_the_provider(server_cert: trustme.LeafCert, ca: trustme.CA,
                                                               files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        stub.hold.set()
        # The time runs out between two polls (the solver cancels) or during one (the adapter gives up)
        with pytest.raises(TimeoutError, match=r"(time limit; cancelled|job job-1 cancelled)$"):
            solve(fast(adapter(stub, files)), time_limit_s=3.0)
    assert stub.deleted == ["job-1"] and stub.jobs["job-1"].status == "CANCELLED"
    assert ("DELETE", "/v1/jobs/job-1") in [(s.method, s.path) for s in stub.seen]


def test_cancel_of_a_finished_job_sends_no_delete(server_cert: trustme.LeafCert, ca: trustme.CA,
                                                  files: TlsFiles) -> None:
    with ProviderStub(server_cert, ca) as stub:
        qpu = fast(adapter(stub, files))
        solution = solve(qpu)
        qpu.cancel(solution.details["job"])
    assert stub.deleted == []


def test_a_provider_that_never_answers_costs_the_attempt_its_own_time_only(files: TlsFiles) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        qpu = HttpQpu(f"https://localhost:{silent.getsockname()[1]}", BACKEND, ReloadingClientTls(files),
                      timeout_s=30)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no answer within 0\.[0-9]+ s"):
            solve(qpu, time_limit_s=0.6)
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------- configuration


def test_from_env_names_what_is_missing_and_reads_the_files(files: TlsFiles) -> None:
    from solvers.qpu_factory import make_qpu_adapter

    with pytest.raises(ValueError, match="set QGATE_QPU_HTTP_URL, QGATE_QPU_HTTP_BACKEND, QGATE_QPU_HTTP_CERT_FILE"):
        make_qpu_adapter("http", backend_name="fake_manila", queue_delay_s=0.0, failure_rate=0.0, env={})
    env = {"QGATE_QPU_HTTP_URL": "https://provider.example:8443", "QGATE_QPU_HTTP_BACKEND": BACKEND,
           "QGATE_QPU_HTTP_CERT_FILE": str(files.cert_file), "QGATE_QPU_HTTP_KEY_FILE": str(files.key_file),
           "QGATE_QPU_HTTP_CA_FILE": str(files.ca_file), "QGATE_QPU_HTTP_TIMEOUT_S": "2.5"}
    qpu = make_qpu_adapter("http", backend_name="fake_manila", queue_delay_s=0.0, failure_rate=0.0, env=env)
    assert isinstance(qpu, HttpQpu) and (qpu.host, qpu.port, qpu.name, qpu.timeout_s) == \
        ("provider.example", 8443, BACKEND, 2.5)
    assert qpu.tls.files == files
    with pytest.raises(ValueError, match="https://host"):
        HttpQpu("http://provider.example", BACKEND, qpu.tls)


def test_settings_accept_the_http_provider() -> None:
    from settings import Settings

    assert Settings.from_env({"QGATE_QPU_PROVIDER": "http"}).qpu_provider == "http"


def test_sighup_in_a_pool_child_reloads_the_provider_certificates(monkeypatch: pytest.MonkeyPatch,
                                                                  files: TlsFiles) -> None:
    import signal

    import settings
    from workers.qpu import reload_provider_tls_on_sighup

    monkeypatch.setattr(settings, "get_settings", lambda: settings.Settings(qpu_provider="http"))
    monkeypatch.setattr("workers.qpu.get_settings", settings.get_settings)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        reload_provider_tls_on_sighup()
        assert callable(signal.getsignal(signal.SIGHUP))  # else the SIGHUP below would end the test run
        tls = ReloadingClientTls(files)
        first = tls.current()
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: tls.current() is not first, timeout=2)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert tls.loads == 2
