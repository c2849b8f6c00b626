"""The OpenAPI 3.1 description of the public surface, with request schemas taken from the models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

from api.schemas import SolveRequest
from solvers.problems import Problem

ERROR = {"$ref": "#/components/schemas/Error"}


def _responses(*codes: int, ok: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        if code < 300:
            out[str(code)] = {"description": "success", "content": {"application/json": {"schema": ok or {}}}}
        else:
            out[str(code)] = {"description": "error", "content": {"application/json": {"schema": ERROR}}}
    return out


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    problem_schema = TypeAdapter(Problem).json_schema(ref_template="#/components/schemas/{model}")
    defs = problem_schema.pop("$defs", {})
    solve_schema = SolveRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(solve_schema.pop("$defs", {}))
    solve_schema["properties"]["problem"] = problem_schema
    bearer = [{"bearer": []}]
    job = {"$ref": "#/components/schemas/Job"}
    paths = {
        "/oauth/token": {"post": {"summary": "OAuth 2.0 client-credentials token", "security": [],
                                  "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                                      "type": "object", "required": ["grant_type"],
                                      "properties": {"grant_type": {"const": "client_credentials"},
                                                     "client_id": {"type": "string"},
                                                     "client_secret": {"type": "string"},
                                                     "scope": {"type": "string"}}}}}},
                                  "responses": _responses(200, 400, 401)}},
        "/.well-known/jwks.json": {"get": {"summary": "Issuer public keys", "security": [],
                                           "responses": _responses(200)}},
        "/api/v1/quantum/solve": {"post": {
            "summary": "Submit a problem", "security": bearer,
            "parameters": [
                {"name": "X-Latency-Budget-Ms", "in": "header", "schema": {"type": "integer", "minimum": 1}},
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": solve_schema}}},
            "responses": _responses(200, 202, 400, 401, 403, 409, 413, 422, 429, 503, 504, ok=job)}},
        "/api/v1/jobs/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "The job resource", "security": bearer, "responses": _responses(200, 401, 403, 404, ok=job)},
            "delete": {"summary": "Cancel an unfinished job", "security": bearer,
                       "responses": _responses(200, 401, 403, 404, 409, ok=job)}},
        "/api/v1/audit/verify": {"get": {"summary": "Verify the audit chain", "security": bearer,
                                         "responses": _responses(200, 401, 403)}},
        "/api/v1/audit/jobs/{job_id}": {"get": {
            "summary": "A job's audit entries", "security": bearer,
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _responses(200, 401, 403, 404)}},
        "/api/v1/audit/checkpoint": {"get": {
            "summary": "The latest signed checkpoint (C2SP tlog-checkpoint as a signed note)", "security": bearer,
            "responses": {"200": {"description": "the note", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_responses(401, 403, 404)}}},
        "/api/v1/audit/keys": {"get": {"summary": "Audit signing keys, retired ones included",
                                       "security": bearer, "responses": _responses(200, 401, 403)}},
        "/api/v1/audit/proof/inclusion": {"get": {
            "summary": "RFC 6962 inclusion proof", "security": bearer,
            "parameters": [_query("index"), _query("size")], "responses": _responses(200, 400, 401, 403, 404)}},
        "/api/v1/audit/proof/consistency": {"get": {
            "summary": "RFC 6962 consistency proof", "security": bearer,
            "parameters": [_query("first"), _query("second")], "responses": _responses(200, 400, 401, 403, 404)}},
        "/api/v1/audit/jobs/{job_id}/receipt": {"get": {
            "summary": "A job's entries with inclusion proofs to a checkpoint covering them", "security": bearer,
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _responses(200, 401, 403, 404, 503)}},
        "/api/v1/audit/entries": {"get": {
            "summary": "Log entries by index (audit:admin: all; audit:read: own tenant's)", "security": bearer,
            "parameters": [_query("start"), _query("end")], "responses": _responses(200, 400, 401, 403, 404)}},
        "/healthz": {"get": {"summary": "Process up", "security": [], "responses": _responses(200)}},
        "/readyz": {"get": {"summary": "Redis and a worker per lane answer", "security": [],
                            "responses": _responses(200, 503)}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "text"}}}},
    }
    defs["Error"] = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array"}, "msg": {"type": "string"}}}}}}
    defs["Job"] = {"type": "object", "required": ["job_id", "status"], "properties": {
        "job_id": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "kind": {"type": "string"}, "created_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]},
        "latency_budget_ms": {"type": "integer"}, "plan": {"type": "array"}, "attempts": {"type": "array"},
        "result": {"type": ["object", "null"]}, "solver": {"type": ["object", "null"]},
        "provenance": {"type": "object"}, "cost_estimate": {"type": "object"}, "error": {"type": ["string", "null"]}}}
    return {"openapi": "3.1.0", "info": {"title": "qgate", "version": "0.1.0"}, "paths": paths,
            "components": {"schemas": defs, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
