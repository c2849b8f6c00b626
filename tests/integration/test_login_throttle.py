"""Failed logins are throttled per client id and per source address, over real HTTP on the stack.

Every test here speaks from its own loopback address (127.x.y.z: Linux routes all of 127/8 to lo), so
the failures it provokes never count against 127.0.0.1, which the rest of the suite logs in from.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import requests

from api.auth import MAX_CLIENT_ID_CHARS
from ratelimit.limiter import storage_key
from ratelimit.logins import LoginFailureRules, login_limits
from settings import Settings
from tests.integration.stack import Stack, loopback_session

SCOPES = "quantum:solve solver:heuristic"
DEFAULTS = Settings()  # the stack runs with the default login-failure limits
LOGIN_FAILURE_WINDOW_S = DEFAULTS.login_failure_window_s
LOGIN_FAILURES_PER_CLIENT = DEFAULTS.login_failures_per_client
LOGIN_FAILURES_PER_ADDRESS = DEFAULTS.login_failures_per_address
RULES = LoginFailureRules(LOGIN_FAILURE_WINDOW_S, LOGIN_FAILURES_PER_CLIENT, LOGIN_FAILURES_PER_ADDRESS)


def login(stack: Stack, session: requests.Session, client_id: str, secret: str, **headers: str) -> requests.Response:
    return session.post(stack.url + "/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(client_id, secret), headers=headers, timeout=30)


def fresh_client(stack: Stack) -> dict[str, Any]:
    return stack.create_client(f"thr-{secrets.token_hex(4)}", SCOPES)


def client_key(client_id: str) -> str:
    return storage_key(login_limits(RULES, client_id, "unused")[0])


def assert_throttled(reply: requests.Response) -> None:
    assert reply.status_code == 429, (reply.status_code, reply.text)
    assert reply.json()["error"]
    assert 1 <= int(reply.headers["Retry-After"]) <= LOGIN_FAILURE_WINDOW_S


def fail(stack: Stack, session: requests.Session, client_id: str, times: int) -> float:
    """``times`` wrong secrets, each a 401; the seconds they took."""
    started = time.perf_counter()
    for attempt in range(times):
        reply = login(stack, session, client_id, "wrong-" + secrets.token_hex(8))
        assert reply.status_code == 401, (attempt, reply.status_code, reply.text)
    return time.perf_counter() - started


def test_a_client_id_is_locked_after_its_failures_even_for_the_right_secret(stack: Stack) -> None:
    client, other = fresh_client(stack), fresh_client(stack)
    session = loopback_session()
    fail(stack, session, client["client_id"], LOGIN_FAILURES_PER_CLIENT)
    assert_throttled(login(stack, session, client["client_id"], "wrong"))
    # Refused too: answering it would need the scrypt the lockout saves, and would end the guessing.
    assert_throttled(login(stack, session, client["client_id"], client["client_secret"]))
    assert_throttled(login(stack, loopback_session(), client["client_id"], client["client_secret"]))  # from anywhere
    assert login(stack, session, other["client_id"], other["client_secret"]).status_code == 200  # others unaffected
    # The window passes (shortened here rather than waited out): the right secret works again.
    redis = stack.redis()
    assert 0 < redis.ttl(client_key(client["client_id"])) <= LOGIN_FAILURE_WINDOW_S
    redis.expire(client_key(client["client_id"]), 1)
    time.sleep(1.5)
    assert login(stack, session, client["client_id"], client["client_secret"]).status_code == 200


def test_throttled_answers_cost_no_scrypt(stack: Stack) -> None:
    locked, measured = fresh_client(stack), fresh_client(stack)
    session = loopback_session()
    fail(stack, session, locked["client_id"], LOGIN_FAILURES_PER_CLIENT)
    failing = fail(stack, loopback_session(), measured["client_id"], 5)
    started = time.perf_counter()
    for _ in range(20):
        assert_throttled(login(stack, session, locked["client_id"], "wrong"))
    throttled = time.perf_counter() - started
    assert throttled < failing, f"20 throttled answers took {throttled:.3f}s, 5 real failures {failing:.3f}s"


def test_successful_logins_are_not_counted(stack: Stack) -> None:
    client = fresh_client(stack)
    session = loopback_session()
    for _ in range(LOGIN_FAILURES_PER_CLIENT + 3):
        reply = login(stack, session, client["client_id"], client["client_secret"])
        assert reply.status_code == 200, reply.text
    assert stack.redis().get(client_key(client["client_id"])) is None


def test_an_address_is_locked_after_failures_on_many_client_ids(stack: Stack) -> None:
    """The per-address limit does not care which ids were tried, nor what X-Forwarded-For claims."""
    client = fresh_client(stack)
    session = loopback_session()
    for attempt in range(LOGIN_FAILURES_PER_ADDRESS):
        reply = login(stack, session, "qc_" + secrets.token_hex(12), "wrong",
                      **{"X-Forwarded-For": f"203.0.113.{attempt}"})
        assert reply.status_code == 401, (attempt, reply.text)
    assert_throttled(login(stack, session, "qc_" + secrets.token_hex(12), "wrong",
                           **{"X-Forwarded-For": "198.51.100.7"}))
    assert_throttled(login(stack, session, client["client_id"], client["client_secret"]))
    assert login(stack, loopback_session(), client["client_id"], client["client_secret"]).status_code == 200


def test_counters_are_keyed_by_hashes_never_by_what_the_caller_sent(stack: Stack) -> None:
    session = loopback_session()
    odd = "qc_*:{evil}\r\n"  # in the form body: Basic cannot carry a ':' in the id
    reply = session.post(stack.url + "/oauth/token", timeout=30,
                         data={"grant_type": "client_credentials", "client_id": odd, "client_secret": "wrong"})
    assert reply.status_code == 401
    names = list(stack.redis().scan_iter("qgate:rl:loginfail/*"))
    assert names and all(re.fullmatch(r"qgate:rl:loginfail/(client|addr)/[0-9a-f]{32}/[0-9]+/[0-9]+/second", n)
                         for n in names), names
    assert client_key(odd) in names
    assert not any(odd in n or session.address in n for n in names)  # type: ignore[attr-defined]


def test_oversized_credentials_are_refused_cheaply_and_not_counted(stack: Stack) -> None:
    client = fresh_client(stack)
    session = loopback_session()
    started = time.perf_counter()
    for _ in range(LOGIN_FAILURES_PER_ADDRESS + 5):
        assert login(stack, session, "q" * (MAX_CLIENT_ID_CHARS + 1), "x").status_code == 401
        assert login(stack, session, client["client_id"], "s" * 4096).status_code == 401
    elapsed = time.perf_counter() - started
    assert login(stack, session, client["client_id"], client["client_secret"]).status_code == 200
    assert elapsed < 0.05 * 2 * (LOGIN_FAILURES_PER_ADDRESS + 5), f"{elapsed:.2f}s: were they hashed?"


def test_the_basic_scheme_is_case_insensitive(stack: Stack) -> None:
    import base64

    client = fresh_client(stack)
    credentials = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    for scheme in ("basic", "BASIC"):
        reply = loopback_session().post(stack.url + "/oauth/token", data={"grant_type": "client_credentials"},
                               headers={"Authorization": f"{scheme}  {credentials}"}, timeout=30)
        assert reply.status_code == 200, reply.text


def test_behind_trusted_proxies_the_address_is_the_one_the_last_proxy_saw(tmp_path) -> None:
    """With QGATE_TRUSTED_PROXIES=1 every caller arrives from the proxy's address: counting that address
    would let one attacker lock every client out, so the count goes by the address the proxy appended.
    Entries a caller wrote into X-Forwarded-For itself sit further left and are never read."""
    from tests.integration.stack import running_stack

    with running_stack(tmp_path, QGATE_TRUSTED_PROXIES="1", QGATE_LOGIN_FAILURES_PER_ADDRESS="3") as proxied:
        client = fresh_client(proxied)
        proxy = loopback_session()  # every request below arrives from this one "proxy" address

        def through_proxy(caller: str, secret: str, claimed: str | None = None) -> requests.Response:
            chain = f"{claimed}, {caller}" if claimed else caller
            return login(proxied, proxy, "qc_" + secrets.token_hex(12) if secret == "wrong" else client["client_id"],
                         secret, **{"X-Forwarded-For": chain})

        for attempt in range(3):
            assert through_proxy("198.51.100.7", "wrong", claimed=f"203.0.113.{attempt}").status_code == 401
        assert_throttled(through_proxy("198.51.100.7", "wrong", claimed="192.0.2.99"))
        assert through_proxy("198.51.100.8", client["client_secret"]).status_code == 200
        assert login(proxied, proxy, client["client_id"], client["client_secret"]).status_code == 200
        for bogus in ("not-an-address", "", "1.2.3.4.5", "x" * 300):
            assert through_proxy(bogus, client["client_secret"]).status_code in (200, 429)
