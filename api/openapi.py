"""The OpenAPI 3.1 description of the public surface, precise enough to fuzz the gateway against.

Every operation lists every status it may answer, with the shape of each answer; request schemas state
what the gateway accepts (limits are read from the code that enforces them: ``solvers.problems``,
``api.schemas``, ``api.body``, ``api.audit`` and the settings). What JSON Schema cannot say (a square
distance matrix, ``demands[i] <= vehicle_capacity``, QUBO indices below ``n``, OpenQASM that parses, the
sum of the distances staying below 1e300) is checked by the gateway and answered with ``422``.
``tests/integration/test_fuzz_openapi.py`` holds the gateway to this document.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from api import schemas as envelope
from api.audit import MAX_ENTRIES
from api.body import SAFE_INTEGER
from jobs.model import JobView
from solvers import problems as p

JSON = "application/json"
LANES = ["qpu", "sim", "heuristic"]
KINDS = list(p.KINDS)
JOB_ID_PATTERN = "^[0-9a-f]{32}$"
# api.audit.INDEX_PATTERN: one to fifteen digits.
MAX_INDEX = 10**15 - 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# --- request schemas ------------------------------------------------------------------------------------

NON_NEGATIVE = {"type": "number", "minimum": 0}
SAFE_INT = {"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER}


def _matrix(max_rows: int, max_cols: int, min_rows: int = 1, min_cols: int = 1) -> dict[str, Any]:
    return {"type": "array", "minItems": min_rows, "maxItems": max_rows,
            "items": {"type": "array", "minItems": min_cols, "maxItems": max_cols, "items": NON_NEGATIVE}}


def _pair(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "prefixItems": [item, item], "minItems": 2, "maxItems": 2, "items": False}


def _problem_schemas() -> dict[str, dict[str, Any]]:
    distances = {**_matrix(p.MAX_NODES, p.MAX_NODES, 2, 2),
                 "description": "n×n non-negative distances (square; node 0 is the depot)"}
    locations = {"type": "array", "minItems": 2, "maxItems": p.MAX_NODES, "items": _pair({"type": "number"}),
                 "description": "[[x, y], ...]: Euclidean distances"}
    # Exactly one of distances / locations; an explicit null counts as absent.
    one_source = {"oneOf": [
        {"required": ["distances"], "properties": {"distances": {"type": "array"}}},
        {"required": ["locations"], "properties": {"locations": {"type": "array"}}}]}
    routing = {"distances": _nullable(distances), "locations": _nullable(locations)}
    tsp = {"type": "object", "title": "tsp", "additionalProperties": False, "required": ["kind"],
           "properties": {"kind": {"const": "tsp"}, **routing}, **one_source}
    cvrp = {"type": "object", "title": "cvrp", "additionalProperties": False,
            "required": ["kind", "demands", "vehicle_capacity", "num_vehicles"],
            "properties": {
                "kind": {"const": "cvrp"}, **routing,
                "demands": {"type": "array", "minItems": 2, "maxItems": p.MAX_NODES,
                            "prefixItems": [{"const": 0}],
                            "items": {"type": "integer", "minimum": 0, "maximum": SAFE_INTEGER},
                            "description": "one per node, demands[0] = 0, each at most vehicle_capacity"},
                "vehicle_capacity": {"type": "integer", "exclusiveMinimum": 0, "maximum": SAFE_INTEGER},
                "num_vehicles": {"type": "integer", "minimum": 1, "maximum": p.MAX_NODES},
                "time_windows": _nullable({"type": "array", "minItems": 2, "maxItems": p.MAX_NODES,
                                           "items": _pair(NON_NEGATIVE),
                                           "description": "[[earliest, latest], ...] per node"}),
                "service_times": _nullable({"type": "array", "minItems": 2, "maxItems": p.MAX_NODES,
                                            "items": NON_NEGATIVE}),
                "durations": _nullable({**_matrix(p.MAX_NODES, p.MAX_NODES, 2, 2),
                                        "description": "n×n; default: the distances"})},
            **one_source}
    assignment = {"type": "object", "title": "assignment", "additionalProperties": False,
                  "required": ["kind", "costs", "weights", "capacities"],
                  "properties": {
                      "kind": {"const": "assignment"},
                      "costs": {**_matrix(p.MAX_LOADS, p.MAX_TRUCKS), "description": "loads × trucks"},
                      "weights": {"type": "array", "minItems": 1, "maxItems": p.MAX_LOADS, "items": NON_NEGATIVE},
                      "capacities": {"type": "array", "minItems": 1, "maxItems": p.MAX_TRUCKS,
                                     "items": NON_NEGATIVE}}}
    index = {"type": "integer", "minimum": 0, "maximum": p.MAX_QUBO_VARS - 1}
    qubo = {"type": "object", "title": "qubo", "additionalProperties": False, "required": ["kind", "n", "terms"],
            "properties": {
                "kind": {"const": "qubo"},
                "n": {"type": "integer", "minimum": 1, "maximum": p.MAX_QUBO_VARS},
                "terms": {"type": "array", "maxItems": p.MAX_QUBO_TERMS,
                          "items": {"type": "array", "prefixItems": [index, index, {"type": "number"}],
                                    "minItems": 3, "maxItems": 3, "items": False},
                          "description": "[[i, j, w], ...] with i, j < n; i = j is a linear term"}}}
    circuit = {"type": "object", "title": "circuit", "additionalProperties": False, "required": ["kind", "qasm"],
               "properties": {
                   "kind": {"const": "circuit"},
                   "qasm": {"type": "string", "minLength": 1, "maxLength": p.MAX_QASM_CHARS,
                            "description": "OpenQASM 2 or 3; only qelib1.inc / stdgates.inc may be included"},
                   "shots": {"type": "integer", "minimum": 1, "maximum": p.MAX_SHOTS, "default": 1024}}}
    return {"TspProblem": tsp, "CvrpProblem": cvrp, "AssignmentProblem": assignment, "QuboProblem": qubo,
            "CircuitProblem": circuit}


PROBLEM_REFS = {"tsp": "TspProblem", "cvrp": "CvrpProblem", "assignment": "AssignmentProblem",
                "qubo": "QuboProblem", "circuit": "CircuitProblem"}


def _solve_request() -> dict[str, Any]:
    scalar = {"anyOf": [{"type": "string", "maxLength": envelope.MAX_METADATA_TEXT}, SAFE_INT,
                        {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    return {
        "type": "object", "additionalProperties": False, "required": ["problem"],
        "properties": {
            "problem": {"oneOf": [_ref(name) for name in PROBLEM_REFS.values()],
                        "discriminator": {"propertyName": "kind", "mapping": {
                            kind: f"#/components/schemas/{name}" for kind, name in PROBLEM_REFS.items()}}},
            "solver": {"enum": ["auto", *LANES], "default": "auto",
                       "description": "the first lane to try (auto: qpu); needs the solver:<lane> scope"},
            "strategy": {"enum": ["fallback", "portfolio"], "default": "fallback",
                         "description": "fallback: one lane after another; portfolio: every lane of the plan at "
                                        "once, each with the budget less a margin, the best feasible answer by "
                                        "the gateway's objective wins (solver must stay auto: 422 loc "
                                        "[body, solver])"},
            "shadow": _nullable({"type": "array", "maxItems": len(LANES), "uniqueItems": True,
                                 "items": {"enum": list(LANES)},
                                 "description": "lanes that also solve the problem as shadow runs of their own "
                                                "(batch priority, at least 10 s), compared with the answer "
                                                "served in /api/v1/reports/lanes; each needs solver:<lane> (403 "
                                                "loc [body, shadow, i]); default: the tenant's operator setting"}),
            "cost_tier": {"enum": ["standard", "premium"], "default": "standard",
                          "description": "premium needs the tier:premium scope"},
            "callback_url": _nullable({"type": "string", "maxLength": 2048, "pattern": "^https?://",
                                       "description": "https to a public address (422 otherwise, loc "
                                                      "[body, callback_url]; 503 when its host does not "
                                                      "resolve in time)"}),
            "seed": _nullable({"type": "integer", "minimum": 0, "maximum": 2**32 - 1}),
            "priority": _nullable({"enum": ["interactive", "batch"],
                                   "description": "interactive attempts wait on their lane's interactive queue, "
                                                  "served by reserved workers; default: interactive for budgets "
                                                  "up to the sync threshold, else batch"}),
            "metadata": {"type": "object", "maxProperties": envelope.MAX_METADATA_ITEMS,
                         "propertyNames": {"minLength": 1, "maxLength": 64},
                         "additionalProperties": scalar,
                         "description": "flat scalars, carried into the job's request and the audit log"}}}


# --- response schemas -----------------------------------------------------------------------------------

def _job_schemas() -> dict[str, dict[str, Any]]:
    """The job resource, as ``jobs.model.JobView`` describes it: its schema under ``Job`` and the schemas
    of its parts (``JobAttempt``, ``JobPlanStep``, ...) hoisted from ``$defs`` into the components."""
    schema = JobView.model_json_schema(ref_template="#/components/schemas/{model}")
    parts = schema.pop("$defs", {})
    return {"Job": schema, **parts}



def _response_schemas() -> dict[str, dict[str, Any]]:
    string, integer = {"type": "string"}, {"type": "integer"}
    b64_list = {"type": "array", "items": string}
    error = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string", "minLength": 1},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["loc", "msg"],
            "properties": {"loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                           "msg": string, "type": string}}}}}
    entry_line = {"type": "object", "required": ["index", "line"],
                  "properties": {"index": {"type": "integer", "minimum": 0}, "line": string}}
    reading = {"type": "object", "required": ["at", "backend", "qubits", "shots"], "properties": {
        "at": {"type": "number"}, "backend": string, "qubits": integer, "shots": integer,
        "fidelity": {"type": "number", "minimum": 0, "maximum": 1}, "job": string, "transpiled_depth": integer,
        "duration_s": {"type": "number"}, "error": string, "seed": integer, "breaker": string}}
    return {
        "LaneCanary": {"type": "object", "required": ["lane", "enabled", "breaker", "readings"], "properties": {
            "lane": string, "enabled": {"type": "boolean"}, "period_s": {"type": "number"},
            "min_fidelity": {"type": "number"}, "qubits": integer, "shots": integer,
            "breaker": {"type": "object", "required": ["state"], "properties": {
                "state": {"enum": ["closed", "open", "half_open"]}, "since": {"type": ["string", "null"]},
                "reason": {"type": ["string", "null"]}}},
            "readings": {"type": "array", "items": reading}}},
        "Error": error,
        **_job_schemas(),
        # A sync solve whose budget ran out: the job as it stands, and why it is an error.
        "JobTimeout": {"allOf": [_ref("Job"), _ref("Error")]},
        "Accepted": {"type": "object", "required": ["job_id", "status", "track_url"], "properties": {
            "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
            # "running" when an Idempotency-Key replays a job that has started.
            "status": {"enum": ["queued", "running"]},
            "track_url": {"type": "string", "pattern": "^/api/v1/jobs/[0-9a-f]{32}$"}}},
        "Token": {"type": "object", "required": ["access_token", "token_type", "expires_in", "scope"],
                  "properties": {"access_token": {"type": "string", "minLength": 1},
                                 "token_type": {"const": "Bearer"},
                                 "expires_in": {"type": "integer", "minimum": 1}, "scope": string}},
        "Jwks": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
            "type": "object", "required": ["kty", "kid"],
            "properties": {"kty": string, "kid": string, "alg": string, "use": string, "crv": string,
                           "x": string, "y": string}}}}},
        "AuditVerification": {"oneOf": [
            {"type": "object", "required": ["valid", "entries", "head"],
             "properties": {"valid": {"const": True}, "entries": {"type": "integer", "minimum": 0},
                            "head": string}},
            {"type": "object", "required": ["valid", "entries", "first_bad_seq", "reason"],
             "properties": {"valid": {"const": False}, "entries": {"type": "integer", "minimum": 0},
                            "first_bad_seq": _nullable(integer), "reason": string}}]},
        "JobAuditEntries": {"type": "object", "required": ["job_id", "entries"], "properties": {
            "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "entries": {"type": "array", "items": {"type": "object", "required": ["seq", "type"]}}}},
        "AuditKeys": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
            "type": "object", "required": ["kid", "name", "alg", "public_key", "vkey", "not_before", "not_after"],
            "properties": {"kid": string, "name": string, "alg": {"const": "Ed25519"}, "public_key": string,
                           "vkey": string, "not_before": _nullable(string), "not_after": _nullable(string)}}}}},
        "InclusionProof": {"type": "object", "required": ["index", "size", "hashes"], "properties": {
            "index": integer, "size": integer, "hashes": b64_list}},
        "ConsistencyProof": {"type": "object", "required": ["first", "second", "hashes"], "properties": {
            "first": integer, "second": integer, "hashes": b64_list}},
        "AuditEntries": {"type": "object", "required": ["entries"],
                         "properties": {"entries": {"type": "array", "items": entry_line}}},
        "Receipt": {"type": "object", "required": ["job_id", "checkpoint", "entries"], "properties": {
            "job_id": {"type": "string", "pattern": JOB_ID_PATTERN}, "checkpoint": string,
            "entries": {"type": "array", "items": {
                "type": "object", "required": ["index", "line", "proof"],
                "properties": {"index": {"type": "integer", "minimum": 0}, "line": string, "proof": b64_list}}}}},
        "LaneReport": {"type": "object", "required": ["since", "to", "tenant", "kind", "rows"], "properties": {
            "since": string, "to": string, "tenant": _nullable(string), "kind": _nullable(string), "gap": string,
            "source": _nullable({"enum": ["shadow", "portfolio"]}),
            "rows": {"type": "array", "items": {
                "type": "object", "required": ["lane", "kind", "runs"],
                "properties": {"lane": {"enum": list(LANES)}, "kind": string,
                               "runs": {"type": "integer", "minimum": 0},
                               "compared": {"type": "integer", "minimum": 0},
                               **{name: _nullable({"type": "number"}) for name in (
                                   "feasible_share", "better_share", "equal_share", "worse_share", "mean_gap",
                                   "p90_gap", "p50_time_ms", "p90_time_ms")},
                               "estimated_cost_usd": {"type": "number", "minimum": 0},
                               "shadow_runs": {"type": "integer", "minimum": 0,
                                               "description": "runs that were shadow runs"},
                               "portfolio_runs": {"type": "integer", "minimum": 0,
                                                  "description": "runs that were a portfolio race's finished "
                                                                 "attempts other than the winner's"}}}}}},
        "Usage": {"type": "object", "required": ["from", "to", "group_by", "tenant", "rows"], "properties": {
            "from": string, "to": string, "group_by": string, "tenant": _nullable(string),
            "granularity": string,
            "rows": {"type": "array", "items": {
                "type": "object", "required": ["day", "group", "jobs", "succeeded", "failed", "cancelled",
                                               "qpu_shots", "usd"],
                "properties": {"day": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                               "group": string, "jobs": {"type": "integer", "minimum": 0},
                               "succeeded": {"type": "integer", "minimum": 0},
                               "failed": {"type": "integer", "minimum": 0},
                               "cancelled": {"type": "integer", "minimum": 0},
                               "qpu_shots": {"type": "integer", "minimum": 0},
                               "usd": {"type": "number", "minimum": 0}}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {"type": "object", "required": ["ready", "redis", "lanes"], "properties": {
            "ready": {"type": "boolean"}, "redis": string,
            "lanes": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["alive", "limits"],
                "properties": {"alive": {"type": "boolean"}, "limits": {"type": "object"}}}}}},
    }


# --- responses ------------------------------------------------------------------------------------------

def _header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


RETRY_AFTER = _header("seconds to wait before retrying", {"type": "integer", "minimum": 0})
LOCATION = _header("the job's track URL", {"type": "string", "pattern": "^/api/v1/jobs/[0-9a-f]{32}$"})
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": _header("requests the binding limit admits per window", {"type": "integer", "minimum": 1},
                               required=False),
    "RateLimit-Remaining": _header("requests the binding limit still admits", {"type": "integer", "minimum": 0},
                                   required=False),
    "RateLimit-Reset": _header("seconds until the binding limit admits one more request",
                               {"type": "integer", "minimum": 0}, required=False),
    "RateLimit-Policy": _header("every limit the request spent, as amount;w=window seconds",
                                {"type": "string", "pattern": "^[0-9]+;w=[0-9]+(, [0-9]+;w=[0-9]+)*$"},
                                required=False),
}  # absent only when QGATE_RATE_LIMITS=off
BEARER_CHALLENGE = _header("RFC 6750 challenge", {"type": "string", "pattern": "^Bearer "})

ERROR_DESCRIPTIONS = {
    400: "unreadable request (not JSON, bad parameters)",
    401: "no token, or an invalid one",
    403: "a required scope is missing",
    404: "unknown (or another tenant's) resource",
    409: "conflict with the resource's state or an earlier request",
    413: "request body too large",
    422: "invalid request: every fault with its loc",
    429: "rate limit or quota",
    503: "a backend (job store, broker, workers) is unavailable, or the request should be retried shortly",
}


def _error(code: int, headers: dict[str, Any] | None = None, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description or ERROR_DESCRIPTIONS[code],
                           "content": {JSON: {"schema": _ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


def _ok(schema: dict[str, Any], description: str = "success", headers: dict[str, Any] | None = None,
        media_type: str = JSON) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {media_type: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _rate_limited(description: str | None = None) -> dict[str, Any]:
    return _error(429, {"Retry-After": RETRY_AFTER, **RATE_LIMIT_HEADERS}, description)


def _bearer_errors(*codes: int) -> dict[str, Any]:
    """The answers every bearer-protected operation shares (each spends its client's and tenant's rate
    limits), plus ``codes``."""
    out = {"401": _error(401, {"WWW-Authenticate": BEARER_CHALLENGE}), "403": _error(403),
           "429": _rate_limited(), "503": _error(503, {"Retry-After": RETRY_AFTER})}
    for code in codes:
        out[str(code)] = _rate_limited() if code == 429 else _error(
            code, {"Retry-After": RETRY_AFTER} if code == 503 else None)
    return dict(sorted(out.items()))


# A submission refused by admission by prediction (README, Predictive orchestration): which answer says whose
# work fills the lanes, and each lane's reason is an error at loc ["plan", lane].
ADMISSION_REFUSALS = {
    "429": _rate_limited("rate limit or quota; also when no planned lane can finish within the budget and the "
                         "jobs waiting on those lanes are at least QGATE_TENANT_QUEUE_SHARE the tenant's own "
                         "(message starts with \"quota: your own queued jobs\"); Retry-After: the predicted drain"),
    "503": _error(503, {"Retry-After": RETRY_AFTER},
                  "a backend is unavailable; or no planned lane can finish within the budget given the queues "
                  "ahead or an open breaker (each lane's reason at loc [plan, lane]); Retry-After: the shortest "
                  "predicted drain"),
}


def _index_query(name: str, minimum: int = 0, description: str | None = None) -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": True,
           "schema": {"type": "integer", "minimum": minimum, "maximum": MAX_INDEX}}
    return {**out, "description": description} if description else out


JOB_ID_PARAMETER = {"name": "job_id", "in": "path", "required": True, "description": "32 lowercase hex digits",
                    "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}


USAGE_TIME = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from settings import get_settings

    max_budget_ms = get_settings().max_budget_ms
    bearer = [{"bearer": []}]
    job = _ref("Job")
    paths: dict[str, Any] = {
        "/oauth/token": {"post": {
            "operationId": "issueToken", "summary": "OAuth 2.0 client-credentials token",
            "description": "Client id and secret as HTTP Basic credentials (or the client_id / client_secret "
                           "form fields). Failed logins are throttled per client id and per address (429).",
            "security": [{"clientBasic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"],
                "properties": {"grant_type": {"const": "client_credentials"},
                               "client_id": {"type": "string", "maxLength": 256},
                               "client_secret": {"type": "string", "maxLength": 256},
                               "scope": {"type": "string", "description": "space-separated; default: every "
                                                                          "scope of the client"}}}}}},
            "responses": {"200": _ok(_ref("Token")),
                          "400": _error(400, description="unsupported_grant_type or invalid_scope"),
                          "401": _error(401, description="invalid_client"),
                          "413": _error(413),
                          "429": _rate_limited("too many failed logins"),
                          "503": _error(503, {"Retry-After": RETRY_AFTER})}}},
        "/.well-known/jwks.json": {"get": {
            "operationId": "jwks", "summary": "The issuer's public keys", "security": [],
            "responses": {"200": _ok(_ref("Jwks"))}}},
        "/api/v1/quantum/solve": {"post": {
            "operationId": "solve", "summary": "Submit a problem", "security": bearer,
            "description": "Scope quantum:solve. A budget up to the sync threshold waits for the answer "
                           "(200, or 504 with the job as it stands); a larger one answers 202.",
            "parameters": [
                {"name": "X-Latency-Budget-Ms", "in": "header", "required": False,
                 "description": "default 5000",
                 "schema": {"type": "integer", "minimum": 1, "maximum": max_budget_ms}},
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "description": "the same key and body from the same tenant answer the same job",
                 "schema": {"type": "string", "maxLength": 200}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("SolveRequest")}}},
            "responses": {
                "200": _ok(job, "the finished job (sync path)"),
                "202": _ok(_ref("Accepted"), "accepted; poll track_url", {"Location": LOCATION}),
                "400": _error(400),
                **_bearer_errors(409, 413, 422, 429), **ADMISSION_REFUSALS,
                "504": _ok(_ref("JobTimeout"), "the budget ran out before the job finished",
                           {"Location": LOCATION})}}},
        "/api/v1/jobs/{job_id}": {
            "parameters": [JOB_ID_PARAMETER],
            "get": {"operationId": "getJob", "summary": "The job resource (own tenant)", "security": bearer,
                    "responses": {"200": _ok(job), **_bearer_errors(404)}},
            "delete": {"operationId": "cancelJob", "summary": "Cancel an unfinished job", "security": bearer,
                       "responses": {"200": _ok(job, "the cancelled job"),
                                     **_bearer_errors(404, 409)}}},
        "/api/v1/jobs/{job_id}/redeliver": {"post": {
            "operationId": "redeliverJobWebhook", "security": bearer,
            "summary": "Send a finished job's webhook again (a fresh retry window)",
            "description": "Scope quantum:solve, own tenant. 409 when the job has not finished or has no "
                           "callback_url. The delivery runs on the webhook worker; its attempts appear in "
                           "the job's deliveries.",
            "parameters": [JOB_ID_PARAMETER],
            "responses": {"202": _ok(job, "the redelivery is due; the job as it stands"),
                          **_bearer_errors(404, 409)}}},
        "/api/v1/audit/verify": {"get": {
            "operationId": "auditVerify", "summary": "Verify the audit chain", "security": bearer,
            "responses": {"200": _ok(_ref("AuditVerification")), **_bearer_errors()}}},
        "/api/v1/audit/jobs/{job_id}": {"get": {
            "operationId": "auditJobEntries", "summary": "A job's audit entries", "security": bearer,
            "description": "503 while the job's entries are not all written yet.",
            "parameters": [JOB_ID_PARAMETER],
            "responses": {"200": _ok(_ref("JobAuditEntries")), **_bearer_errors(404)}}},
        "/api/v1/audit/checkpoint": {"get": {
            "operationId": "auditCheckpoint", "security": bearer,
            "summary": "The latest signed checkpoint (C2SP tlog-checkpoint as a signed note)",
            "responses": {"200": _ok({"type": "string"}, "the note", media_type="text/plain"),
                          **_bearer_errors(404)}}},
        "/api/v1/audit/keys": {"get": {
            "operationId": "auditKeys", "summary": "Audit signing keys, retired ones included", "security": bearer,
            "responses": {"200": _ok(_ref("AuditKeys")), **_bearer_errors()}}},
        "/api/v1/audit/proof/inclusion": {"get": {
            "operationId": "auditInclusionProof", "summary": "RFC 6962 inclusion proof", "security": bearer,
            "parameters": [_index_query("index", description="below size"),
                           _index_query("size", 1, "a tree size the log has reached")],
            "responses": {"200": _ok(_ref("InclusionProof")), "400": _error(400), **_bearer_errors(404)}}},
        "/api/v1/audit/proof/consistency": {"get": {
            "operationId": "auditConsistencyProof", "summary": "RFC 6962 consistency proof", "security": bearer,
            "parameters": [_index_query("first", 1, "at most second"),
                           _index_query("second", 1, "a tree size the log has reached")],
            "responses": {"200": _ok(_ref("ConsistencyProof")), "400": _error(400), **_bearer_errors(404)}}},
        "/api/v1/audit/jobs/{job_id}/receipt": {"get": {
            "operationId": "auditReceipt", "security": bearer,
            "summary": "A job's entries with inclusion proofs to a checkpoint covering them",
            "description": "503 while no checkpoint covers every entry of the job yet.",
            "parameters": [JOB_ID_PARAMETER],
            "responses": {"200": _ok(_ref("Receipt")), **_bearer_errors(404)}}},
        "/api/v1/audit/entries": {"get": {
            "operationId": "auditEntries", "security": bearer,
            "summary": "Log entries from start to end (audit:admin: all; audit:read: the tenant's own)",
            "parameters": [_index_query("start"),
                           _index_query("end", description=f"start <= end <= start + {MAX_ENTRIES}")],
            "responses": {"200": _ok(_ref("AuditEntries")), "400": _error(400), **_bearer_errors(404)}}},
        "/api/v1/usage": {"get": {
            "operationId": "usage", "security": bearer,
            "summary": "Jobs, outcomes, QPU shots and estimated USD per day and group, from the roll-ups",
            "description": "Scope quantum:solve or ops:read. The caller's own tenant; with ops:read, "
                           "tenant=<name> or tenant=* (every tenant). JSON, or CSV with format=csv or "
                           "Accept: text/csv. Hour roll-ups: from and to are rounded out to whole hours.",
            "parameters": [
                {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "pattern": USAGE_TIME},
                 "description": "ISO 8601 date or date-time (UTC unless given), from 1970 to 9999 in UTC; "
                                "default: 24 h before to"},
                {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "pattern": USAGE_TIME},
                 "description": "ISO 8601 date or date-time, from 1970 to 9999 in UTC; default: now"},
                {"name": "group_by", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(tenant|lane|kind|metadata\\.[A-Za-z0-9_.-]{1,64})$"}},
                {"name": "tenant", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(\\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"}},
                {"name": "format", "in": "query", "required": False, "schema": {"enum": ["json", "csv"]}}],
            "responses": {"200": {"description": "usage rows", "content": {
                JSON: {"schema": _ref("Usage")}, "text/csv": {"schema": {"type": "string"}}}},
                "400": _error(400), **_bearer_errors()}}},
        "/api/v1/usage/limits": {"get": {
            "operationId": "usageLimits", "security": bearer,
            "summary": "QPU spend allowances with what is reserved, spent and left, per UTC day and month",
            "description": "Scope quantum:solve or ops:read. The caller's own tenant; with ops:read, "
                           "tenant=<name> or tenant=* (every tenant). Allowances come from the policy data "
                           "(qpu_spend) and `qgate limits set`, whose fields win.",
            "parameters": [
                {"name": "tenant", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(\\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"}}],
            "responses": {"200": _ok({
                "type": "object", "required": ["tenant", "windows", "limits"],
                "properties": {
                    "tenant": {"type": ["string", "null"]}, "windows": {"type": "string"},
                    "limits": {"type": "array", "items": {
                        "type": "object",
                        "required": ["tenant", "business_unit", "unit", "window", "period", "allowance", "reserved",
                                     "spent", "left", "resets_in_s"],
                        "properties": {
                            "tenant": {"type": "string"}, "business_unit": {"type": ["string", "null"]},
                            "unit": {"enum": ["usd", "shots"]}, "window": {"enum": ["day", "month"]},
                            "period": {"type": "string"}, "allowance": {"type": "number"},
                            "reserved": {"type": "number"}, "spent": {"type": "number"},
                            "left": {"type": "number"}, "resets_in_s": {"type": "integer"}}}}}}),
                "400": _error(400), **_bearer_errors()}}},
        "/api/v1/reports/lanes": {"get": {
            "operationId": "laneReport", "security": bearer,
            "summary": "Shadow runs and portfolio attempts per lane and kind against the answers served: "
                       "the evidence for a lane",
            "description": "Scope quantum:solve or ops:read. The caller's own tenant; with ops:read, "
                           "tenant=<name> or tenant=*. A run is a shadow run or a portfolio race's finished "
                           "attempt other than the winner's (shadow_runs, portfolio_runs). Gap: (run - served) "
                           "/ |served| on the gateway's recomputed objective, negative is better. JSON, or CSV "
                           "with format=csv or Accept: text/csv.",
            "parameters": [
                {"name": "kind", "in": "query", "required": False, "schema": {"enum": list(KINDS)}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "pattern": USAGE_TIME},
                 "description": "ISO 8601 date or date-time; default: 7 days ago (whole UTC days are read)"},
                {"name": "tenant", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(\\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"}},
                {"name": "source", "in": "query", "required": False, "schema": {"enum": ["shadow", "portfolio"]},
                 "description": "count only shadow runs or only portfolio attempts; default: both"},
                {"name": "format", "in": "query", "required": False, "schema": {"enum": ["json", "csv"]}}],
            "responses": {"200": {"description": "one row per lane and kind", "content": {
                JSON: {"schema": _ref("LaneReport")}, "text/csv": {"schema": {"type": "string"}}}},
                "400": _error(400), **_bearer_errors()}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Process up", "security": [],
                             "responses": {"200": _ok(_ref("Health"))}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Redis and a worker per lane answer",
                            "security": [],
                            "responses": {"200": _ok(_ref("Readiness")),
                                          "503": _ok(_ref("Readiness"), "Redis or a lane is down")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (scope ops:read)",
                             "security": bearer,
                             "responses": {"200": _ok({"type": "string"}, "Prometheus text exposition",
                                                      media_type="text/plain"),
                                           "503": _error(503, {"Retry-After": RETRY_AFTER}), **_bearer_errors()}}},
        "/api/v1/ops/lanes/{lane}/canary": {"get": {
            "operationId": "laneCanary", "summary": "A lane's calibration-canary readings and breaker (scope ops:read)",
            "security": bearer,
            "parameters": [
                {"name": "lane", "in": "path", "required": True, "schema": {"enum": list(LANES)}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,4}$"}}],
            "responses": {"200": _ok(_ref("LaneCanary")), "400": _error(400), **_bearer_errors(404)}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                  "responses": {"200": _ok({"type": "object"})}}},
    }
    named = [_problem_schemas(), {"SolveRequest": _solve_request()}, _response_schemas()]
    schemas = {name: schema for group in named for name, schema in group.items()}
    assert len(schemas) == sum(map(len, named)), "two component schemas share a name"
    return {
        "openapi": "3.1.0",
        "info": {"title": "qgate", "version": "0.1.0",
                 "description": "Every error body is JSON with an `error` string."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "an access token from POST /oauth/token"},
            "clientBasic": {"type": "http", "scheme": "basic", "description": "client id and secret"}}},
    }
