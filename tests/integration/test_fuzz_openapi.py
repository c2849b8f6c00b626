"""Suite (c) of the hardening issue: schemathesis over ``/openapi.json`` against the real stack.

Over a thousand generated requests, bounded in time, must get no 5xx and answers that match the
documented schemas: the status is documented for the operation, the content type is the documented one,
documented headers are present and well-formed, the body validates, and every error body is JSON with an
``error`` string. The requests come in four kinds:

- authorized, positive: valid by the document (the gateway still answers 422 for what JSON Schema cannot
  say, e.g. a non-square distance matrix); solve budgets are kept above the sync threshold so that jobs
  are queued (202) and cancelled at once, and the fuzz never waits on a solver. A small run keeps the
  budgets tiny to go through the sync path (200 or 504);
- authorized, negative: invalid by the document, which must be refused with a 4xx (schemathesis'
  ``negative_data_rejection``), never a 5xx;
- without a token and with garbage tokens: 401 with a JSON error and a Bearer challenge;
- with a token that lacks the operation's scope: 403.

The fuzz runs as its own tenant (rate limits and quotas are per tenant, so it does not starve the tests
sharing the session stack; 429 is a documented answer all the same) and from its own loopback address
(failed logins are throttled per address, and the rest of the suite logs in from 127.0.0.1).
Generation is derandomized: a run is reproducible, and a failure prints the request as a curl command.
``QGATE_FUZZ_SCALE`` (default 1) multiplies every example count; ``QGATE_FUZZ_SEED`` explores other cases.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth, negative_data_rejection,
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)

from api.app import create_app
from api.openapi import openapi_document
from settings import Settings
from tests.integration import problems
from tests.integration.conftest import ALL_SCOPES
from tests.integration.stack import Stack, loopback_session

SCALE = float(os.environ.get("QGATE_FUZZ_SCALE", "1"))
SEED = int(os.environ["QGATE_FUZZ_SEED"]) if os.environ.get("QGATE_FUZZ_SEED") else None
MIN_GENERATED_CASES = 1000
SYNC_THRESHOLD_MS = Settings().sync_threshold_ms
REQUEST_TIMEOUT_S = 30  # a request slower than this is a hang, and fails its case
BUDGET_HEADER = "X-Latency-Budget-Ms"
DOCUMENT = openapi_document()
OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items()
              for method in item if method != "parameters"]
BEARER_OPERATIONS = [(method, path) for method, path in OPERATIONS
                     if DOCUMENT["paths"][path][method.lower()].get("security") == [{"bearer": []}]]
# Examples per operation (authorized runs); parameterless operations exhaust their space at once.
EXAMPLES = {
    ("POST", "/api/v1/quantum/solve"): 200,
    ("POST", "/oauth/token"): 40,
    ("GET", "/api/v1/jobs/{job_id}"): 40,
    ("DELETE", "/api/v1/jobs/{job_id}"): 40,
    ("GET", "/api/v1/audit/jobs/{job_id}"): 40,
    ("GET", "/api/v1/audit/jobs/{job_id}/receipt"): 40,
    ("GET", "/api/v1/audit/proof/inclusion"): 50,
    ("GET", "/api/v1/audit/proof/consistency"): 50,
    ("GET", "/api/v1/audit/entries"): 50,
}
NEGATIVE_EXAMPLES = {("POST", "/api/v1/quantum/solve"): 150}
DEFAULT_EXAMPLES, DEFAULT_NEGATIVE_EXAMPLES, AUTH_EXAMPLES, SYNC_EXAMPLES = 10, 30, 12, 30


def _examples(count: int) -> int:
    return max(1, round(count * SCALE))


def hypothesis_settings(examples: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Derandomized unless QGATE_FUZZ_SEED names a seed (to explore beyond the usual cases); no shrinking,
    which would cost many more requests: a failure is reported as the request that failed."""
    chosen = settings(max_examples=_examples(examples), deadline=None, derandomize=SEED is None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                      print_blob=False)

    def apply(test: Callable[..., Any]) -> Callable[..., Any]:
        test = chosen(test)
        return test if SEED is None else seed(SEED)(test)
    return apply


# --- checks ---------------------------------------------------------------------------------------------

def _content_type(response: Any) -> str:
    return (response.headers.get("content-type") or [""])[0]


def error_body_is_json_with_error_string(ctx: Any, response: Any, case: Any) -> None:
    """The contract: every error body, the server's own included, is JSON with an ``error`` string."""
    if response.status_code < 400:
        return
    assert _content_type(response).startswith("application/json"), \
        f"{response.status_code} answered as {_content_type(response)!r}, not JSON"
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} body is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], \
        f"{response.status_code} body has no error string: {str(body)[:300]}"


def is_sync_timeout(case: Any, response: Any) -> bool:
    """The one 5xx the contract asks for: 504 to a sync solve (budget at most the sync threshold) whose
    budget ran out before the job finished."""
    if response.status_code != 504 or case.operation.path != "/api/v1/quantum/solve":
        return False
    budget = str((case.headers or {}).get(BUDGET_HEADER, ""))
    return budget.isdigit() and int(budget) <= SYNC_THRESHOLD_MS


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """Any other 5xx fails: the broker and Redis are up, so not even a 503 is expected."""
    if not is_sync_timeout(case, response):
        assert response.status_code < 500, f"server error {response.status_code}: {response.content[:300]!r}"


def sync_timeouts_allowed(check: Callable[..., Any]) -> Callable[..., Any]:
    def allowing(ctx: Any, response: Any, case: Any) -> Any:
        return None if is_sync_timeout(case, response) else check(ctx, response, case)
    allowing.__name__ = check.__name__
    return allowing


def _expect(status: int) -> Callable[..., None]:
    def check(ctx: Any, response: Any, case: Any) -> None:
        assert response.status_code == status, \
            f"expected {status}, got {response.status_code}: {response.content[:300]!r}"
    check.__name__ = f"status_is_{status}"
    return check


def bearer_challenge(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code == 401:
        challenge = (response.headers.get("www-authenticate") or [""])[0]
        assert challenge.startswith("Bearer "), f"401 without a Bearer challenge: {challenge!r}"


# --- known defects: each excuses one check, only for the answers that show that defect -------------------
# Reported, to be fixed in code this file may not touch. Once a defect is fixed its answers no longer match
# its predicate, and the check applies to them again.
EXCUSED: collections.Counter = collections.Counter()


def defect_504_error_is_null(case: Any, response: Any) -> bool:
    """DEFECT-1 (api/errors.py, ``_api_error``): a sync solve whose budget runs out is answered 504 with
    ``{"error": exc.message, **job_view}``, and the job view's own ``error`` (null while the job runs)
    overwrites the message: the body has ``"error": null``, against the contract ("every error body is JSON
    with an error string") and the documented JobTimeout schema. Excuses response_schema_conformance and
    error_body_is_json_with_error_string for those answers."""
    if response.status_code != 504:
        return False
    try:
        return json.loads(response.content).get("error") is None
    except ValueError:
        return False


def _coercible(value: Any) -> bool:
    """What pydantic's lax mode turns into a number: a boolean, or text that spells a number."""
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def defect_lax_number_coercion(case: Any, response: Any) -> bool:
    """DEFECT-2 (solvers/problems.py, api/schemas.py: pydantic models in lax mode): a number sent as text
    (``"n": "3"``, ``"distances": [[0, "1"], [1, 0]]``, ``"seed": "7"``) or as a boolean (``"n": true``) is
    accepted and coerced, where the documented schema (and the contract) says number. Excuses
    negative_data_rejection for accepted negative cases whose every mutation is such a type swap."""
    if not 200 <= response.status_code < 300 or case.meta is None:
        return False
    mutations = getattr(case.meta.phase.data, "mutations", ())
    return bool(mutations) and all(
        m.parameter_location == ParameterLocation.BODY and "type" in m.keywords and _coercible(m.new_value)
        for m in mutations)


def excusing(check: Callable[..., Any], defect: Callable[[Any, Any], bool]) -> Callable[..., Any]:
    def excused(ctx: Any, response: Any, case: Any) -> Any:
        if defect(case, response):
            EXCUSED[f"{defect.__name__}: {check.__name__}"] += 1
            return None
        return check(ctx, response, case)
    excused.__name__ = check.__name__
    return excused


CONFORMANCE = [sync_timeouts_allowed(not_a_server_error), no_server_error, status_code_conformance,
               content_type_conformance, response_headers_conformance,
               excusing(response_schema_conformance, defect_504_error_is_null),
               excusing(error_body_is_json_with_error_string, defect_504_error_is_null)]
NEGATIVE_REJECTION = excusing(negative_data_rejection, defect_lax_number_coercion)


# --- the fuzzer -----------------------------------------------------------------------------------------

@dataclass
class Tally:
    started: float = field(default_factory=time.monotonic)
    generated: int = 0
    follow_ups: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    by_run: collections.Counter = field(default_factory=collections.Counter)
    completed_runs: int = 0

    def summary(self) -> str:
        return (f"{self.generated} generated cases (+{self.follow_ups} follow-up requests) in "
                f"{time.monotonic() - self.started:.1f}s; statuses {dict(sorted(self.statuses.items()))}; "
                f"excused as known defects {dict(EXCUSED)}; per run {dict(self.by_run)}")


@dataclass
class Fuzzer:
    url: str
    schema: Any
    token: str
    basic: str
    scopeless_token: str
    session: requests.Session
    tally: Tally = field(default_factory=Tally)

    def complete(self, fuzz: Callable[[], None]) -> None:
        fuzz()
        self.tally.completed_runs += 1

    def operation(self, method: str, path: str) -> Any:
        return self.schema[path][method]

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, case: Any, headers: dict[str, str] | None, checks: list[Callable[..., Any]],
             run: str) -> Any:
        """Send ``case`` with ``headers`` on top and hold the answer to ``checks``."""
        response = case.call(base_url=self.url, session=self.session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        self.tally.generated += 1
        self.tally.statuses[response.status_code] += 1
        self.tally.by_run[run] += 1
        case.validate_response(response, checks=checks, headers=headers,
                               transport_kwargs={"base_url": self.url, "session": self.session,
                                                 "headers": headers, "timeout": REQUEST_TIMEOUT_S})
        return response

    def follow_up(self, method: str, path: str, checks: list[Callable[..., Any]], **parts: Any) -> Any:
        """A request built here rather than generated (cancelling a job the fuzz created), checked alike."""
        case = self.operation(method, path).Case(**parts)
        response = case.call(base_url=self.url, session=self.session, headers=self.bearer(),
                             timeout=REQUEST_TIMEOUT_S)
        self.tally.follow_ups += 1
        case.validate_response(response, checks=checks, headers=self.bearer())
        return response

    def cancel_created_job(self, response: Any) -> None:
        """Cancel the job a solve answer names (202 and 504), so that the fuzz leaves the lanes idle."""
        if response.status_code not in (202, 504):
            return
        job_id = json.loads(response.content)["job_id"]
        reply = self.follow_up("DELETE", "/api/v1/jobs/{job_id}", CONFORMANCE, path_parameters={"job_id": job_id})
        assert reply.status_code in (200, 409), reply.content


@pytest.fixture(scope="module")
def fuzzer(stack: Stack) -> Iterator[Fuzzer]:
    client = stack.create_client("fuzz-openapi", ALL_SCOPES)
    scopeless = stack.create_client("fuzz-openapi-ops", "tier:premium")
    config = schemathesis.Config.from_dict({"generation": {
        # Credentials are the test's to choose (valid, absent, garbage), never generated.
        "with-security-parameters": False,
    }})
    schema = schemathesis.openapi.from_url(stack.url + "/openapi.json", config=config, timeout=30)
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    session = loopback_session()
    yield Fuzzer(url=stack.url, schema=schema, token=stack.token(client), basic=f"Basic {basic}",
                 scopeless_token=stack.token(scopeless), session=session)
    session.close()


# --- the document itself --------------------------------------------------------------------------------

def _flask_routes() -> set[tuple[str, str]]:
    """Every JSON API route. The console's HTML pages (/dashboard...) are not API operations: they answer
    a cookie session, not a bearer token, and test_console_browser.py and the tenant-isolation suite
    cover them."""
    app = create_app(Settings())
    return {(method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)) for rule in app.url_map.iter_rules()
            if rule.rule != "/static/<path:filename>" and not rule.rule.startswith("/dashboard")
            for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}


def test_the_served_document_is_the_one_in_the_code_and_covers_every_route(stack: Stack) -> None:
    reply = requests.get(stack.url + "/openapi.json", timeout=30)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == json.loads(json.dumps(DOCUMENT))
    assert set(OPERATIONS) == _flask_routes(), "a route is served but not documented, or the other way round"


# --- authorized fuzzing ---------------------------------------------------------------------------------

def _budget(case: Any, low: int, high: int) -> Any:
    """Keep a generated (valid) latency budget, moved into [low, high]; an absent one stays absent."""
    raw = case.headers.get(BUDGET_HEADER) if case.headers else None
    if raw is not None and str(raw).isdigit():
        case.headers[BUDGET_HEADER] = str(low + int(raw) % (high - low + 1))
    return case


def _credentials(fuzzer: Fuzzer, method: str, path: str) -> dict[str, str]:
    if path == "/oauth/token":
        return {"Authorization": fuzzer.basic}  # the client's own, which the generated form fields cannot undo
    return fuzzer.bearer() if (method, path) in BEARER_OPERATIONS else {}


def _has_inputs(method: str, path: str) -> bool:
    """Whether the operation takes anything a negative case could get wrong."""
    item = DOCUMENT["paths"][path]
    return bool(item.get("parameters") or item[method.lower()].get("parameters")
                or item[method.lower()].get("requestBody"))


FUZZ_RUNS = [(GenerationMode.POSITIVE, method, path) for method, path in OPERATIONS] + \
            [(GenerationMode.NEGATIVE, method, path) for method, path in OPERATIONS if _has_inputs(method, path)]


@pytest.mark.parametrize("mode,method,path", FUZZ_RUNS, ids=[f"{m.value} {o} {p}" for m, o, p in FUZZ_RUNS])
def test_fuzz_authorized(fuzzer: Fuzzer, mode: GenerationMode, method: str, path: str) -> None:
    operation = fuzzer.operation(method, path)
    strategy = operation.as_strategy(generation_mode=mode)
    solve = path == "/api/v1/quantum/solve"
    if solve and mode is GenerationMode.POSITIVE:
        # Above the sync threshold: the job is queued (202) and cancelled, and the fuzz never waits.
        strategy = strategy.map(lambda case: _budget(case, SYNC_THRESHOLD_MS + 1, 5000))
    if mode is GenerationMode.POSITIVE:
        examples = EXAMPLES.get((method, path), DEFAULT_EXAMPLES)
        checks = [*CONFORMANCE, ignored_auth]
    else:
        examples = NEGATIVE_EXAMPLES.get((method, path), DEFAULT_NEGATIVE_EXAMPLES)
        checks = [*CONFORMANCE, NEGATIVE_REJECTION]
    headers = _credentials(fuzzer, method, path)
    if path == "/oauth/token" and mode is GenerationMode.NEGATIVE:
        headers = {}  # the form's client_id / client_secret are read only without Basic credentials
    run = f"{mode.value} {method} {path}"

    @hypothesis_settings(examples)
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = fuzzer.send(case, headers, checks, run)
        if solve:
            fuzzer.cancel_created_job(response)

    fuzzer.complete(fuzz)


def test_fuzz_sync_solves(fuzzer: Fuzzer) -> None:
    """Budgets at or below the sync threshold: the answer is the finished job (200) or, when the budget runs
    out first, 504 with the job as it stands; both must match the document."""
    operation = fuzzer.operation("POST", "/api/v1/quantum/solve")

    def tiny_budget(case: Any) -> Any:
        if case.headers is not None and case.headers.get(BUDGET_HEADER) is None:
            case.headers[BUDGET_HEADER] = "1"
        return _budget(case, 1, 300)

    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE).map(tiny_budget)

    @hypothesis_settings(SYNC_EXAMPLES)
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = fuzzer.send(case, fuzzer.bearer(), CONFORMANCE, "sync solve")
        fuzzer.cancel_created_job(response)

    fuzzer.complete(fuzz)


# --- without credentials, with garbage ones, without the scope ------------------------------------------

GARBAGE_TOKENS = st.one_of(
    st.just(""),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300),
    st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80),
             min_size=1, max_size=5).map(".".join),
    st.sampled_from(["eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "null"]),
)


@pytest.mark.parametrize("method,path", BEARER_OPERATIONS, ids=[f"{m} {p}" for m, p in BEARER_OPERATIONS])
def test_fuzz_without_a_token(fuzzer: Fuzzer, method: str, path: str) -> None:
    operation = fuzzer.operation(method, path)
    checks = [*CONFORMANCE, _expect(401), bearer_challenge]

    @hypothesis_settings(AUTH_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def fuzz(case: Any) -> None:
        fuzzer.send(case, None, checks, "no token")

    fuzzer.complete(fuzz)


@pytest.mark.parametrize("method,path", BEARER_OPERATIONS, ids=[f"{m} {p}" for m, p in BEARER_OPERATIONS])
def test_fuzz_with_garbage_tokens(fuzzer: Fuzzer, method: str, path: str) -> None:
    operation = fuzzer.operation(method, path)
    checks = [*CONFORMANCE, _expect(401), bearer_challenge]

    @hypothesis_settings(AUTH_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), token=GARBAGE_TOKENS,
           scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]))
    def fuzz(case: Any, token: str, scheme: str) -> None:
        fuzzer.send(case, {"Authorization": f"{scheme} {token}".strip()}, checks, "garbage token")

    fuzzer.complete(fuzz)


@pytest.mark.parametrize("method,path", BEARER_OPERATIONS, ids=[f"{m} {p}" for m, p in BEARER_OPERATIONS])
def test_fuzz_without_the_scope(fuzzer: Fuzzer, method: str, path: str) -> None:
    operation = fuzzer.operation(method, path)
    checks = [*CONFORMANCE, _expect(403)]

    @hypothesis_settings(AUTH_EXAMPLES // 2)
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def fuzz(case: Any) -> None:
        fuzzer.send(case, {"Authorization": f"Bearer {fuzzer.scopeless_token}"}, checks, "missing scope")

    fuzzer.complete(fuzz)


def test_fuzz_token_endpoint_with_unknown_clients(fuzzer: Fuzzer) -> None:
    """Generated client ids and secrets (form fields or Basic): 401, or 429 once this address is throttled.
    Few examples: each failed login costs the server a scrypt."""
    operation = fuzzer.operation("POST", "/oauth/token")
    basic = st.tuples(st.text(alphabet="abcdefqc_0123456789", min_size=1, max_size=40), st.text(max_size=40)).map(
        lambda pair: "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode())

    @hypothesis_settings(15)
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
           authorization=st.one_of(st.none(), basic))
    def fuzz(case: Any, authorization: str | None) -> None:
        headers = {"Authorization": authorization} if authorization else None
        response = fuzzer.send(case, headers, CONFORMANCE, "unknown client")
        assert response.status_code in (400, 401, 429), response.content

    fuzzer.complete(fuzz)


# --- what fuzzing rarely reaches: real resources, and methods the document does not list ----------------

def test_real_resources_match_their_schemas(fuzzer: Fuzzer, stack: Stack) -> None:
    """A finished job of the fuzz tenant, read through every operation that serves it, and proofs with
    indices that exist: the 200 answers random ids and indices rarely reach."""
    reply = stack.solve(fuzzer.token, {"problem": problems.tsp(5), "solver": "heuristic"}, budget_ms=3000)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    stack.wait_job(fuzzer.token, job_id, timeout=120)
    by_id = {"path_parameters": {"job_id": job_id}}
    assert fuzzer.follow_up("GET", "/api/v1/jobs/{job_id}", CONFORMANCE, **by_id).status_code == 200
    assert fuzzer.follow_up("DELETE", "/api/v1/jobs/{job_id}", CONFORMANCE, **by_id).status_code == 409
    entries = fuzzer.follow_up("GET", "/api/v1/audit/jobs/{job_id}", CONFORMANCE, **by_id)
    assert entries.status_code == 200, entries.content
    receipt = fuzzer.follow_up("GET", "/api/v1/audit/jobs/{job_id}/receipt", CONFORMANCE, **by_id)
    assert receipt.status_code == 200, receipt.content
    size = json.loads(receipt.content)["entries"][-1]["index"] + 1
    for method, path, query in [
            ("GET", "/api/v1/audit/proof/inclusion", {"index": size - 1, "size": size}),
            ("GET", "/api/v1/audit/proof/consistency", {"first": 1, "second": size}),
            ("GET", "/api/v1/audit/entries", {"start": max(0, size - 100), "end": size}),
            ("GET", "/api/v1/audit/checkpoint", {}), ("GET", "/api/v1/audit/verify", {}),
            ("GET", "/api/v1/audit/keys", {})]:
        answer = fuzzer.follow_up(method, path, CONFORMANCE, query=query)
        assert answer.status_code == 200, (path, answer.content)
    # The sync path: a quick job (200), and one that waits behind a QAOA run keeping the sim lane busy for
    # about two seconds, so that its 300 ms run out first (504 with the job as it stands).
    def ring(n: int) -> dict[str, Any]:
        return {"kind": "qubo", "n": n, "terms": [[i, (i + 1) % n, -1.0] for i in range(n)]}

    blocker = stack.solve(fuzzer.token, {"problem": ring(14), "solver": "sim"}, budget_ms=4000)
    assert blocker.status_code == 202, blocker.text
    statuses = []
    for body, budget in [({"problem": problems.tsp(4), "solver": "heuristic"}, "1000"),
                         ({"problem": ring(6), "solver": "sim"}, "300")]:
        case = fuzzer.operation("POST", "/api/v1/quantum/solve").Case(body=body, headers={BUDGET_HEADER: budget})
        answer = case.call(base_url=fuzzer.url, session=fuzzer.session, headers=fuzzer.bearer(),
                           timeout=REQUEST_TIMEOUT_S)
        fuzzer.tally.follow_ups += 1
        statuses.append(answer.status_code)
        case.validate_response(answer, checks=CONFORMANCE, headers=fuzzer.bearer())
        fuzzer.cancel_created_job(answer)
    assert statuses[0] == 200 and statuses[1] in (200, 504), statuses


def test_undocumented_methods_are_405_with_allow(fuzzer: Fuzzer) -> None:
    for path, item in DOCUMENT["paths"].items():
        documented = {m.upper() for m in item if m != "parameters"}
        url = fuzzer.url + re.sub(r"\{job_id\}", "0" * 32, path)
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
            reply = fuzzer.session.request(method, url, headers=fuzzer.bearer(), timeout=REQUEST_TIMEOUT_S)
            fuzzer.tally.follow_ups += 1
            assert reply.status_code == 405, (method, path, reply.status_code)
            assert reply.json()["error"] and set(reply.headers["Allow"].replace(" ", "").split(",")) >= documented


FUZZ_TESTS = len(FUZZ_RUNS) + 1 + 3 * len(BEARER_OPERATIONS) + 1  # every test above that calls complete()


def test_enough_cases_were_generated(fuzzer: Fuzzer, request: pytest.FixtureRequest) -> None:
    """The case count is only meaningful when every test of this module was selected (``-k`` picks a part):
    then every fuzz run must have completed, and a formula that no longer matches the runs fails here."""
    print("\nfuzz:", fuzzer.tally.summary())
    assert request.node.parent is not None
    in_module = {item.nodeid for item in request.node.parent.collect()}
    selected = in_module & {item.nodeid for item in request.session.items}
    if selected != in_module:
        pytest.skip(f"only {len(selected)} of this module's {len(in_module)} tests were selected; "
                    "the case count needs every fuzz run")
    assert fuzzer.tally.completed_runs == FUZZ_TESTS, fuzzer.tally.summary()
    assert fuzzer.tally.generated >= _examples(MIN_GENERATED_CASES), fuzzer.tally.summary()
