"""Webhooks as logic: signatures (checked with the standardwebhooks package and by hand), the SSRF
matrix, sealed secrets, the retry schedule, and the outbox driven by DeliveryService (fakeredis)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from jobs import model
from jobs.outbox import Outbox
from jobs.store import WEBHOOKS_DUE, JobStore
from orchestrator.deliveries import DeliveryService, NotRedeliverable
from orchestrator.service import JobNotFound
from routing import fallback
from webhooks.retry import RetryPolicy, parse_retry_after, verdict
from webhooks.sender import Reply
from webhooks.signing import new_secret, secret_key, signature_headers, verify_qgate_signature
from webhooks.ssrf import Guard, HostsFileResolver, Policy, ResolveTimeout, Target, UnsafeCallback
from webhooks.vault import SecretBox, WebhookSecrets, load_or_create_key, webhook_secret_key

BODY = b'{"job_id":"abc","status":"succeeded"}'


# -- signatures -------------------------------------------------------------------------------------

def test_standard_webhooks_verifies_our_signature() -> None:
    secret = new_secret()
    headers = signature_headers(BODY, "msg_1", int(time.time()), [secret])
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_standard_webhooks_refuses_a_tampered_body_or_another_secret() -> None:
    secret = new_secret()
    headers = signature_headers(BODY, "msg_1", int(time.time()), [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_x_qgate_signature_is_hmac_of_t_dot_body_by_hand() -> None:
    secret, stamp = new_secret(), int(time.time())
    header = signature_headers(BODY, "msg_1", stamp, [secret])["X-Qgate-Signature"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{stamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={stamp},v1={expected}"
    assert verify_qgate_signature(BODY, header, secret)
    assert not verify_qgate_signature(BODY + b" ", header, secret)
    assert not verify_qgate_signature(BODY, header, secret, now=stamp + 301)


def test_during_a_rotation_both_secrets_verify_in_both_schemes() -> None:
    new, old = new_secret(), new_secret()
    headers = signature_headers(BODY, "msg_1", int(time.time()), [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert headers["X-Qgate-Signature"].count("v1=") == 2
    for secret in (new, old):
        Webhook(secret).verify(BODY, headers)
        assert verify_qgate_signature(BODY, headers["X-Qgate-Signature"], secret)
    assert not verify_qgate_signature(BODY, headers["X-Qgate-Signature"], new_secret())


def test_secrets_are_whsec_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    with pytest.raises(ValueError):
        secret_key("whsec_not base64!")


# -- the SSRF matrix --------------------------------------------------------------------------------

DNS = {"public.example": ["93.184.216.34"], "v6.example": ["2606:4700:4700::1111"],
       "loopback.example": ["127.0.0.1"], "mixed.example": ["93.184.216.34", "10.0.0.7"],
       "metadata.example": ["169.254.169.254"], "mapped.example": ["::ffff:10.1.2.3"],
       "private.internal": ["10.0.0.5"]}


def fake_dns(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("no such name")
    return DNS[host]


class TestSsrfMatrix:
    guard = Guard(Policy(), fake_dns)

    @pytest.mark.parametrize("url", [
        "http://public.example/hook",  # plain http without the setting
        "ftp://public.example/", "javascript:alert(1)", "", "public.example/hook",
        "https://127.0.0.1/", "https://localhost.localdomain.invalid/",
        "https://10.0.0.1/", "https://172.16.5.4/", "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/", "https://100.127.255.254/",
        "https://224.0.0.1/", "https://239.255.255.250/", "https://240.0.0.1/", "https://255.255.255.255/",
        "https://0.0.0.0/", "https://0.1.2.3/", "https://192.0.2.10/", "https://198.51.100.1/",
        "https://203.0.113.9/", "https://198.18.0.1/", "https://192.0.0.8/",
        "https://[::1]/", "https://[::]/", "https://[fe80::1]/", "https://[fc00::1]/", "https://[fd12:3456::1]/",
        "https://[ff02::1]/", "https://[fec0::1]/", "https://[2001:db8::1]/", "https://[100::1]/",
        "https://[::ffff:127.0.0.1]/", "https://[::ffff:169.254.169.254]/", "https://[::ffff:10.0.0.1]/",
        "https://[64:ff9b::7f00:1]/", "https://[64:ff9b::a00:1]/", "https://[64:ff9b:1::1]/",
        "https://[2002:7f00:1::1]/", "https://[2002:a00:1::1]/", "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "https://[::127.0.0.1]/", "https://[fe80::1%25eth0]/",
        "https://2130706433/", "https://0x7f000001/", "https://0x7f.1/", "https://017700000001/",
        "https://0177.0.0.1/", "https://127.1/", "https://127.0.1/", "https://0x7f.0x0.0x0.0x1/",
        "https://3232235777/", "https://1.1.1.01/",
        "https://public.example@127.0.0.1/", "https://user:pw@public.example/", "https://@public.example/",
        "https://public.example\\@127.0.0.1/", "https://public.example /", "https://pub\tlic.example/",
        "https:///hook", "https://:443/", "https://public.example:0/", "https://public.example:99999/",
        "https://loopback.example/", "https://mixed.example/", "https://metadata.example/",
        "https://mapped.example/", "https://private.internal/", "https://unknown.example/",
        "https://-bad-.example/", "https://xn--a.example/",
    ])
    def test_refused(self, url: str) -> None:
        with pytest.raises(UnsafeCallback):
            self.guard.check(url)

    @pytest.mark.parametrize("url, says", [
        ("https://%00/", "percent-encoded"), ("https://pub%6cic.example/", "percent-encoded"),
        ("https://%2e%2e/", "percent-encoded"), ("https://[fe80::1%25eth0]/", "zone id"),
    ])
    def test_percent_signs_in_a_host_are_refused_for_what_they_are(self, url: str, says: str) -> None:
        with pytest.raises(UnsafeCallback) as caught:
            self.guard.check(url)
        assert says in str(caught.value)

    @pytest.mark.parametrize("url, addresses", [
        ("https://public.example/hook", ("93.184.216.34",)),
        ("https://PUBLIC.example.:8443/hook?x=1", ("93.184.216.34",)),
        ("https://v6.example/", ("2606:4700:4700::1111",)),
        ("https://93.184.216.34/hook", ("93.184.216.34",)),
        ("https://[2606:4700:4700::1111]/", ("2606:4700:4700::1111",)),
        ("https://[64:ff9b::5db8:d822]/", ("64:ff9b::5db8:d822",)),  # NAT64 of a public address
        ("https://[::ffff:93.184.216.34]/", ("::ffff:5db8:d822",)),
    ])
    def test_public_addresses_are_accepted(self, url: str, addresses: tuple[str, ...]) -> None:
        assert self.guard.check(url).addresses == addresses

    def test_the_target_keeps_the_name_for_tls_and_host(self) -> None:
        target = self.guard.check("https://PUBLIC.example.:8443/hook?x=1")
        assert (target.host, target.port, target.path, target.host_header) == (
            "public.example", 8443, "/hook?x=1", "public.example:8443")

    def test_the_allow_list_matches_the_host_as_written_not_what_it_resolves_to(self) -> None:
        guard = Guard(Policy.of(["127.0.0.1", "private.internal", "10.9.0.0/16"]), fake_dns)
        assert guard.check("https://127.0.0.1:8443/").addresses == ("127.0.0.1",)
        assert guard.check("https://private.internal/").addresses == ("10.0.0.5",)
        assert guard.check("https://10.9.3.4/").addresses == ("10.9.3.4",)
        with pytest.raises(UnsafeCallback):
            guard.check("https://loopback.example/")  # a name pointed at an allowed address
        with pytest.raises(UnsafeCallback):
            guard.check("http://127.0.0.1/")  # allowed host, but http is off

    def test_http_only_with_the_setting_and_only_for_allowed_hosts(self) -> None:
        guard = Guard(Policy.of(["127.0.0.1"], allow_http=True), fake_dns)
        assert guard.check("http://127.0.0.1:8080/").scheme == "http"
        with pytest.raises(UnsafeCallback):
            guard.check("http://public.example/")

    def test_a_slow_resolver_is_a_timeout_not_a_held_thread(self) -> None:
        def slow(host: str, port: int) -> list[str]:
            time.sleep(2)
            return ["93.184.216.34"]
        started = time.monotonic()
        with pytest.raises(ResolveTimeout):
            Guard(Policy(resolve_timeout_s=0.2), slow).check("https://slow.example/")
        assert time.monotonic() - started < 1.0


def test_a_hosts_file_pins_names_and_is_reread(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("93.184.216.34 rebind.example\n")
    guard = Guard(Policy(), HostsFileResolver(hosts, fake_dns))
    assert guard.check("https://rebind.example/").addresses == ("93.184.216.34",)
    hosts.write_text("127.0.0.1 rebind.example\n")
    with pytest.raises(UnsafeCallback, match="127.0.0.1"):
        guard.check("https://rebind.example/")


# -- sealed secrets ---------------------------------------------------------------------------------

def _vault(tmp_path: Path, grace_s: float = 3600) -> WebhookSecrets:
    key = load_or_create_key(tmp_path / "keys" / "webhook.key")
    return WebhookSecrets(fakeredis.FakeRedis(decode_responses=True), SecretBox(key), grace_s)


def test_the_redis_record_holds_no_plaintext_secret(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    secret = vault.create("qc_1")
    dump = json.dumps({key: vault.redis.get(key) for key in vault.redis.keys("*")})
    assert secret not in dump
    assert secret.removeprefix("whsec_") not in dump
    assert secret_key(secret).hex() not in dump
    assert vault.live("qc_1") == [secret]


def test_the_key_file_is_owner_only_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "webhook.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600 and load_or_create_key(path) == first
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        load_or_create_key(path)


def test_a_sealed_secret_cannot_be_moved_to_another_client(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    vault.create("qc_1")
    vault.redis.set(webhook_secret_key("qc_2"), vault.redis.get(webhook_secret_key("qc_1")))
    with pytest.raises(Exception):
        vault.live("qc_2")


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(tmp_path: Path) -> None:
    vault = _vault(tmp_path, grace_s=100)
    old = vault.create("qc_1")
    now = time.time()
    new, until = vault.rotate("qc_1", now=now)
    assert until == pytest.approx(now + 100)
    assert vault.live("qc_1", now=now + 1) == [new, old]
    assert vault.live("qc_1", now=now + 101) == [new]


# -- the retry schedule -----------------------------------------------------------------------------

@pytest.mark.parametrize("status, expected", [
    (None, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (599, "retry"), (429, "retry"),
    (200, "delivered"), (204, "delivered"), (301, "failed"), (400, "failed"), (401, "failed"),
    (404, "failed"), (408, "failed"), (410, "failed"), (422, "failed")])
def test_what_is_retried(status: int | None, expected: str) -> None:
    assert verdict(status) == expected


def test_a_refusal_is_never_retried() -> None:
    assert verdict(None, refused=True) == "failed"


def test_backoff_doubles_with_bounded_jitter_and_caps() -> None:
    policy = RetryPolicy(base_s=5, max_s=60, window_s=3600, jitter=0.2)
    rng = random.Random(7)
    for n, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60)]:
        for _ in range(50):
            assert nominal * 0.8 <= policy.delay(n, rng=rng) <= nominal * 1.2
    gaps = [policy.delay(n, rng=rng) for n in range(1, 5)]
    assert gaps == sorted(gaps)


def test_retry_after_wins_when_longer_and_the_window_ends_retries() -> None:
    policy = RetryPolicy(base_s=1, max_s=10, window_s=100, jitter=0.0)
    assert policy.delay(1, retry_after_s=30) == 30
    assert policy.delay(3, retry_after_s=2) == 4
    assert policy.next_attempt_at(1, window_start=0, now=50) == 51
    assert policy.next_attempt_at(1, window_start=0, now=50, retry_after_s=60) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- the outbox and DeliveryService -----------------------------------------------------------------

class FakeSender:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Target, bytes, dict[str, str]]] = []

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Reply:
        self.sent.append((target, body, headers))
        return self.replies.pop(0)


class FakeSecrets:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def live(self, client_id: str) -> list[str]:
        return [self.secret]


class ListQueue:
    def __init__(self) -> None:
        self.items: list[tuple[str, int]] = []

    def enqueue(self, job_id: str, token: int) -> None:
        self.items.append((job_id, token))


def _service(sender: FakeSender, secret: str, resolver: Any = fake_dns) -> DeliveryService:
    store = JobStore(fakeredis.FakeRedis(decode_responses=True), 3600)
    return DeliveryService(store, ListQueue(), Guard(Policy(), resolver), sender, FakeSecrets(secret),
                           RetryPolicy(base_s=10, max_s=100, window_s=3600, jitter=0.0), claim_s=30)


def _finished_job(store: JobStore, url: str | None = "https://public.example/hook", webhook: bool = True) -> str:
    job, events = model.new_job(job_id=model.new_job_id(), tenant="acme", client_id="qc_1", kind="tsp",
                                budget_ms=5000, request={"callback_url": url}, plan=[
                                    {"lane": "heuristic", "action": "try", "reason": "first lane"}],
                                fingerprint="sha256:x", cost_estimate={"usd": 0.0, "basis": ""})
    if webhook:
        job.webhook = model.awaiting_webhook(job.job_id)
    job, dispatched = fallback.start(job, 1000)
    store.create(job, {"kind": "tsp"}, events + dispatched)
    store.transition(job.job_id, fallback.conclude_attempt, 1, "succeeded", "", 1000,
                     solver={"lane": "heuristic", "id": "x", "version": "1"}, result={"tour": [0], "cost": 0})
    return job.job_id


def _claim(service: DeliveryService, now: float | None = None) -> tuple[str, int]:
    assert service.enqueue_due(now) == 1
    assert isinstance(service.queue, ListQueue)
    return service.queue.items.pop()


def test_the_transaction_that_ends_a_job_puts_its_webhook_in_the_outbox() -> None:
    service = _service(FakeSender(), new_secret())
    job_id = _finished_job(service.store)
    assert service.store.redis.zscore(WEBHOOKS_DUE, job_id) is not None
    assert service.store.get(job_id).webhook.state == "pending"
    no_hook = _finished_job(service.store, webhook=False)
    assert service.store.redis.zscore(WEBHOOKS_DUE, no_hook) is None


def test_a_delivery_is_signed_logged_and_leaves_the_outbox() -> None:
    secret = new_secret()
    sender = FakeSender(Reply(200, 12.5))
    service = _service(sender, secret)
    job_id = _finished_job(service.store)
    assert service.deliver(*_claim(service)) == "delivered"
    target, body, headers = sender.sent[0]
    assert target.addresses == ("93.184.216.34",)
    assert Webhook(secret).verify(body, headers)["job_id"] == job_id
    assert headers["webhook-id"] == f"msg_{job_id}"
    job = service.store.get(job_id)
    assert [d.model_dump() for d in job.deliveries] == [
        {"attempt": 1, "at": job.deliveries[0].at, "status": 200, "duration_ms": 12.5, "error": None}]
    assert job.webhook.state == "delivered" and job.status == "succeeded"
    assert service.store.redis.zscore(WEBHOOKS_DUE, job_id) is None
    events = [json.loads(f["event"]) for _, f in service.store.redis.xrange("qgate:audit:events")]
    attempted = [e for e in events if e["type"] == "webhook.attempted"]
    assert len(attempted) == 1 and attempted[0]["data"]["status"] == 200


def test_a_503_is_rescheduled_with_the_same_webhook_id_and_a_410_stops() -> None:
    sender = FakeSender(Reply(503, 1.0, "HTTP 503"), Reply(410, 1.0, "HTTP 410"))
    service = _service(sender, new_secret())
    job_id = _finished_job(service.store)
    before = time.time()
    assert service.deliver(*_claim(service)) == "retry"
    due = service.outbox.due_at(job_id)
    assert due is not None and before + 9.9 <= due <= time.time() + 10.1
    assert service.enqueue_due() == 0  # not due yet
    assert service.deliver(*_claim(service, now=due + 0.01)) == "failed"
    assert sender.sent[0][2]["webhook-id"] == sender.sent[1][2]["webhook-id"]
    job = service.store.get(job_id)
    assert [d.status for d in job.deliveries] == [503, 410] and job.webhook.state == "failed"
    assert service.store.redis.zscore(WEBHOOKS_DUE, job_id) is None


def test_a_lost_claim_is_due_again_and_its_stale_task_does_nothing() -> None:
    sender = FakeSender(Reply(200, 1.0))
    service = _service(sender, new_secret())
    _finished_job(service.store)
    job_id, token = _claim(service)
    assert service.enqueue_due() == 0  # claimed: not handed out twice
    again_id, again = _claim(service, now=time.time() + 31)  # the claim ran out (the worker died)
    assert again_id == job_id and again != token
    assert service.deliver(job_id, token) == "stale" and not sender.sent
    assert service.deliver(job_id, again) == "delivered"


def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery_and_not_retried() -> None:
    answers = {"rebind.example": ["93.184.216.34"]}
    sender = FakeSender()
    service = _service(sender, new_secret(), resolver=lambda host, port: answers[host])
    service.guard.check("https://rebind.example/")  # what submission saw
    job_id = _finished_job(service.store, "https://rebind.example/hook")
    answers["rebind.example"] = ["127.0.0.1"]
    assert service.deliver(*_claim(service)) == "failed"
    assert not sender.sent
    error = service.store.get(job_id).deliveries[0].error
    assert "127.0.0.1" in error and "loopback" in error


def test_redeliver_own_finished_jobs_only() -> None:
    sender = FakeSender(Reply(200, 1.0), Reply(200, 1.0))
    service = _service(sender, new_secret())
    job_id = _finished_job(service.store)
    service.deliver(*_claim(service))
    with pytest.raises(JobNotFound):
        service.redeliver("other-tenant", job_id)
    no_url = _finished_job(service.store, url=None, webhook=False)
    with pytest.raises(NotRedeliverable):
        service.redeliver("acme", no_url)
    job = service.redeliver("acme", job_id)
    assert job.webhook.state == "pending" and job.webhook.tries == 0
    assert service.deliver(*_claim(service)) == "delivered"
    assert [d.attempt for d in service.store.get(job_id).deliveries] == [1, 2]
