"""A request's log context (tenant, client, job) ends with the request.

structlog's contextvars were cleared only when the next request began, so every line a serving thread
logged in between carried the last caller's tenant, client id and job id: gunicorn's own "Invalid request
from ip=..." for a header it refused was written as if that tenant had sent it (seen on a live stack).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from api.tokens import issue_token
from tests.unit.flask_app import fake_redis_app


@pytest.fixture
def app(tmp_path: Path):  # type: ignore[no-untyped-def]
    return fake_redis_app(tmp_path)


@pytest.mark.parametrize("path", ["/api/v1/usage/limits", "/api/v1/jobs/0123456789abcdef0123456789abcdef",
                                  "/api/v1/usage?from=nonsense"])
def test_the_log_context_is_empty_once_the_request_is_answered(app, path: str) -> None:  # type: ignore[no-untyped-def]
    svc = app.extensions["qgate"]
    token = issue_token(svc.signing_key, issuer=svc.settings.issuer, audience=svc.settings.audience,
                        client_id="qc_test", tenant="acme", scopes=["quantum:solve"], ttl_s=60)
    structlog.contextvars.clear_contextvars()
    reply = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code < 500, reply.get_data(as_text=True)
    assert structlog.contextvars.get_contextvars() == {}
