"""Webhooks through the real stack: a local HTTPS receiver with a test CA (trustme), allowed through
QGATE_WEBHOOK_ALLOW_HOSTS=127.0.0.1 and QGATE_WEBHOOK_CA_FILE, a hosts file standing in for DNS, and a
retry schedule of seconds. The stack is this module's own (only the heuristic lane: the webhook settings
differ from the shared stack's)."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import trustme
from standardwebhooks import Webhook

from tests.integration import problems
from tests.integration.stack import Stack, free_port, wait_for
from webhooks.signing import verify_qgate_signature

SCOPES = "quantum:solve solver:heuristic"
ASYNC_MS = 5000  # above the sync threshold: 202 and a webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTPS server that records every POST and answers each path from a script of statuses
    (``"hang"`` holds the request open until ``release`` is set); 200 when the script runs out."""

    server: ThreadingHTTPServer
    port: int
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


def _receiver(cert: trustme.LeafCert) -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append(Received(self.path, dict(self.headers), body, time.time()))
            script = receiver.scripts.get(self.path, [])
            action = script.pop(0) if script else 200
            if action == "hang":
                receiver.release.wait(30)
                return
            self.send_response(action)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    holder["r"] = Receiver(server, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["r"]


@dataclass
class Hooks:
    stack: Stack
    receiver: Receiver
    hosts: Path
    client: dict[str, Any]
    token: str

    def submit(self, path: str, host: str = "127.0.0.1", budget_ms: int = ASYNC_MS) -> str:
        reply = self.stack.solve(self.token, {"problem": problems.tsp(6), "solver": "heuristic",
                                              "callback_url": self.receiver.url(path, host)}, budget_ms=budget_ms)
        assert reply.status_code in (200, 202), reply.text
        return reply.json()["job_id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.stack.job(self.token, job_id).json()

    def wait_deliveries(self, job_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        return wait_for(lambda: (d := self.job(job_id)["deliveries"]) and len(d) >= count and d, timeout,
                        f"{count} deliveries of {job_id}", interval=0.2)


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    base = Path(tmp_path_factory.mktemp("webhooks"))
    ca = trustme.CA()
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    receiver = _receiver(ca.issue_cert("127.0.0.1", "localhost", "rebind.test"))
    hosts = base / "hosts"
    hosts.write_text("")
    stack = Stack(base, QGATE_WEBHOOK_ALLOW_HOSTS="127.0.0.1", QGATE_WEBHOOK_CA_FILE=str(ca_file),
                  QGATE_WEBHOOK_HOSTS_FILE=str(hosts), QGATE_WEBHOOK_BACKOFF_S="1", QGATE_WEBHOOK_BACKOFF_MAX_S="8",
                  QGATE_WEBHOOK_TIMEOUT_S="2", QGATE_WEBHOOK_DNS_TIMEOUT_S="1")
    try:
        stack.start_redis()
        stack.start_audit()
        stack.start_watchdog()
        stack.start_worker("heuristic")
        stack.start_webhooks()
        stack.start_web()
        client = stack.create_client(f"hooks-{secrets.token_hex(3)}", SCOPES)
        yield Hooks(stack, receiver, hosts, client, stack.token(client))
    finally:
        receiver.release.set()
        stack.stop()
        receiver.server.shutdown()


def _verify(hooks: Hooks, received: Received, secret: str | None = None) -> dict[str, Any]:
    secret = secret or hooks.client["webhook_secret"]
    assert verify_qgate_signature(received.body, received.headers["X-Qgate-Signature"], secret)
    return Webhook(secret).verify(received.body, received.headers)


def test_each_finished_async_job_gets_exactly_one_delivery_signed_both_ways(hooks: Hooks) -> None:
    assert hooks.client["webhook_secret"].startswith("whsec_")
    jobs = {hooks.submit(f"/ok/{n}"): f"/ok/{n}" for n in range(3)}
    sync_job = hooks.submit("/ok/sync", budget_ms=1000)
    for job_id, path in jobs.items():
        assert hooks.stack.wait_job(hooks.token, job_id)["status"] == "succeeded"
        wait_for(lambda: hooks.receiver.on(path), 30, f"the webhook of {job_id}")
    time.sleep(3)  # room for a duplicate to show up
    for job_id, path in jobs.items():
        [received] = hooks.receiver.on(path)
        payload = _verify(hooks, received)
        assert payload["job_id"] == job_id and payload["status"] == "succeeded"
        assert received.headers["webhook-id"] == f"msg_{job_id}"
        assert [d["status"] for d in hooks.job(job_id)["deliveries"]] == [200]
        hooks.stack.wait_audited(job_id, "webhook.attempted")
    assert hooks.receiver.on("/ok/sync") == [] and hooks.job(sync_job)["deliveries"] == []


def test_two_503s_then_200_make_three_attempts_with_growing_gaps(hooks: Hooks) -> None:
    hooks.receiver.scripts["/flaky"] = [503, 503, 200]
    job_id = hooks.submit("/flaky")
    deliveries = hooks.wait_deliveries(job_id, 3)
    assert [d["status"] for d in deliveries] == [503, 503, 200]
    assert [d["attempt"] for d in deliveries] == [1, 2, 3]
    got = hooks.receiver.on("/flaky")
    assert len(got) == 3 and len({r.headers["webhook-id"] for r in got}) == 1
    first_gap, second_gap = got[1].at - got[0].at, got[2].at - got[1].at
    assert 0.5 < first_gap < second_gap, (first_gap, second_gap)
    _verify(hooks, got[2])


def test_a_410_stops_retries(hooks: Hooks) -> None:
    hooks.receiver.scripts["/gone"] = [410, 200, 200]
    job_id = hooks.submit("/gone")
    hooks.wait_deliveries(job_id, 1)
    time.sleep(4)  # past two backoff steps
    assert len(hooks.receiver.on("/gone")) == 1
    assert [d["status"] for d in hooks.job(job_id)["deliveries"]] == [410]


def test_killing_the_webhook_worker_mid_retry_loses_no_delivery(hooks: Hooks) -> None:
    hooks.receiver.release.clear()
    hooks.receiver.scripts["/killed"] = [503, "hang", 200]
    job_id = hooks.submit("/killed")
    wait_for(lambda: len(hooks.receiver.on("/killed")) >= 2, 30, "the retry to reach the receiver")
    hooks.stack.kill_webhooks()  # SIGKILL while the retry's request is in flight
    hooks.receiver.release.set()
    hooks.stack.start_webhooks()
    deliveries = wait_for(lambda: (d := hooks.job(job_id)["deliveries"]) and d[-1]["status"] == 200 and d,
                          60, "the delivery after the restart", interval=0.3)
    assert [d["status"] for d in deliveries] == [503, 200]  # the killed attempt never got an outcome
    got = hooks.receiver.on("/killed")
    assert len(got) == 3 and len({r.headers["webhook-id"] for r in got}) == 1
    _verify(hooks, got[-1])


def test_a_name_rebound_to_loopback_after_submission_is_refused_at_delivery(hooks: Hooks) -> None:
    hooks.hosts.write_text("93.184.216.34 rebind.test\n")  # public when the job is submitted
    job_id = hooks.submit("/rebind", host="rebind.test")
    hooks.hosts.write_text("127.0.0.1 rebind.test\n")  # loopback by the time it is delivered
    deliveries = wait_for(lambda: [d for d in hooks.job(job_id)["deliveries"] if "127.0.0.1" in (d["error"] or "")],
                          60, "the refusal at delivery", interval=0.3)
    assert "loopback" in deliveries[0]["error"] and deliveries[0]["status"] is None
    assert hooks.receiver.on("/rebind") == []


@pytest.mark.parametrize("url", [
    "https://127.0.0.2/hook", "https://2130706433/hook", "https://0x7f.1/hook", "https://017700000001/hook",
    "https://public.example@127.0.0.1/hook", "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:127.0.0.1]/hook", "https://10.0.0.1/hook", "https://100.64.0.1/hook",
    "http://127.0.0.1/hook", "https://loop.test/hook"])
def test_unsafe_callback_urls_are_422_at_submission(hooks: Hooks, url: str) -> None:
    hooks.hosts.write_text("127.0.0.1 loop.test\n")
    reply = hooks.stack.solve(hooks.token, {"problem": problems.tsp(5), "callback_url": url}, budget_ms=ASYNC_MS)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["errors"]
    assert error["loc"] == ["body", "callback_url"] and error["msg"].startswith("callback_url")


def test_redeliver_resends_with_the_same_id_and_a_rotated_secret_signs_beside_the_old(hooks: Hooks) -> None:
    job_id = hooks.submit("/again")
    hooks.wait_deliveries(job_id, 1)
    rotated = hooks.stack.cli("clients", "rotate-webhook-secret", hooks.client["client_id"])
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["webhook_secret"]
    assert new_secret != hooks.client["webhook_secret"]
    reply = requests.post(f"{hooks.stack.url}/api/v1/jobs/{job_id}/redeliver",
                          headers=hooks.stack.headers(hooks.token), timeout=10)
    assert reply.status_code == 202, reply.text
    hooks.wait_deliveries(job_id, 2)
    first, second = hooks.receiver.on("/again")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    _verify(hooks, second, hooks.client["webhook_secret"])
    _verify(hooks, second, new_secret)
    assert len(second.headers["webhook-signature"].split(" ")) == 2


def test_redeliver_refuses_unfinished_jobs_and_jobs_without_a_callback(hooks: Hooks) -> None:
    reply = hooks.stack.solve(hooks.token, {"problem": problems.tsp(5)}, budget_ms=1000)
    plain = reply.json()["job_id"]
    answer = requests.post(f"{hooks.stack.url}/api/v1/jobs/{plain}/redeliver",
                           headers=hooks.stack.headers(hooks.token), timeout=10)
    assert answer.status_code == 409 and "callback_url" in answer.json()["error"]
    missing = requests.post(f"{hooks.stack.url}/api/v1/jobs/{'0' * 32}/redeliver",
                            headers=hooks.stack.headers(hooks.token), timeout=10)
    assert missing.status_code == 404


def test_a_cancelled_job_sends_its_webhook_too(hooks: Hooks) -> None:
    """Last in the module: the cancelled solver still runs out its budget on the only heuristic worker
    (cancellation reaching the solver is not part of this change)."""
    reply = hooks.stack.solve(hooks.token, {"problem": problems.tsp(200), "solver": "heuristic",
                                            "callback_url": hooks.receiver.url("/cancelled")}, budget_ms=8000)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    cancelled = requests.delete(f"{hooks.stack.url}/api/v1/jobs/{job_id}", headers=hooks.stack.headers(hooks.token),
                                timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    [received] = wait_for(lambda: hooks.receiver.on("/cancelled"), 30, "the cancelled job's webhook")
    assert _verify(hooks, received)["status"] == "cancelled"
