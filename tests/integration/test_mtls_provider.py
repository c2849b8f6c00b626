"""The qpu lane against a provider over mutual TLS, through the whole stack: HTTP, Redis, a real Celery
worker with QGATE_QPU_PROVIDER=http and the local mTLS provider stub. A job runs on the provider; then
the client certificate files are replaced by one the provider does not trust, the worker picks the new
files up on its next attempt, the provider refuses it and the job falls back to the sim lane."""

from __future__ import annotations

from pathlib import Path

import trustme

from tests.integration import problems
from tests.integration.stack import Stack
from tests.mtls_provider import BACKEND, ProviderStub
from tests.unit.test_qpu_http import write_identity

X_ON_0 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3]; x q[0]; measure q -> c;'


def _finished(stack: Stack, token: str, body: dict) -> dict:
    reply = stack.solve(token, body, 20_000)
    assert reply.status_code == 202, reply.text
    return stack.wait_job(token, reply.json()["job_id"])


def test_qpu_jobs_run_at_an_mtls_provider_and_fall_back_when_it_refuses_our_certificate(
        stack: Stack, token: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    files = write_identity(tmp_path / "tls", ca, ca.issue_cert("qgate-worker@example.test"))
    body = {"problem": problems.circuit(X_ON_0, 300), "solver": "auto", "seed": 4}
    with ProviderStub(ca.issue_cert("localhost", "127.0.0.1"), ca) as stub:
        env = {"QGATE_QPU_PROVIDER": "http", "QGATE_QPU_HTTP_URL": stub.url, "QGATE_QPU_HTTP_BACKEND": BACKEND,
               "QGATE_QPU_HTTP_CERT_FILE": str(files.cert_file), "QGATE_QPU_HTTP_KEY_FILE": str(files.key_file),
               "QGATE_QPU_HTTP_CA_FILE": str(files.ca_file)}
        with stack.worker_env("qpu", **env):
            job = _finished(stack, token, body)
            assert job["status"] == "succeeded", job
            assert [(a["lane"], a["outcome"]) for a in job["attempts"]] == [("qpu", "succeeded")]
            assert job["result"]["counts"] == {"001": 300}
            assert job["provenance"]["calibration"]["backend"] == BACKEND
            submitted = [job_id for job_id, stub_job in stub.jobs.items() if stub_job.shots == 300]
            assert submitted and {stub.jobs[j].identity for j in submitted} == {"qgate-worker@example.test"}

            stranger = trustme.CA().issue_cert("qgate-worker@example.test")
            rotated = write_identity(tmp_path / "stranger", ca, stranger)
            for source, target in ((rotated.cert_file, files.cert_file), (rotated.key_file, files.key_file)):
                source.replace(target)
            job = _finished(stack, token, body)
    assert job["status"] == "succeeded", job
    assert [(a["lane"], a["outcome"]) for a in job["attempts"]] == [("qpu", "failed"), ("sim", "succeeded")]
    reason = job["attempts"][0]["reason"]
    assert "TLS: the provider rejected our client certificate" in reason, reason
    assert str(tmp_path) not in reason
