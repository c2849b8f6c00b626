"""A query parameter given twice is refused on every API route: ``?tenant=a&tenant=b`` is the classic
parameter-pollution trick (a checker reading one value, a handler another), and even where both read the
first, the caller who sent two meant something the answer would not say."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from api.tokens import issue_token
from tests.unit.flask_app import fake_redis_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return fake_redis_app(tmp_path_factory.mktemp("pollution"))


def _token(app: Flask) -> str:
    svc = app.extensions["qgate"]
    return issue_token(svc.signing_key, issuer=svc.settings.issuer, audience=svc.settings.audience,
                       client_id="qc_test", tenant="acme", scopes=["quantum:solve", "ops:read", "audit:read"],
                       ttl_s=60)


@pytest.mark.parametrize("path, name", [
    ("/api/v1/usage?tenant=acme&tenant=other", "tenant"),
    ("/api/v1/reports/lanes?kind=tsp&kind=qubo", "kind"),
    ("/api/v1/usage/limits?tenant=acme&tenant=acme", "tenant"),
    ("/api/v1/ops/lanes/qpu/canary?limit=1&limit=1000", "limit"),
    ("/api/v1/audit/entries?start=0&end=5&start=3", "start"),
    ("/api/v1/jobs/" + "0" * 32 + "?x=1&x=2", "x"),
])
def test_a_repeated_query_parameter_is_400_with_its_loc(app: Flask, path: str, name: str) -> None:
    reply = app.test_client().get(path, headers={"Authorization": f"Bearer {_token(app)}"})
    assert reply.status_code == 400, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["errors"] == [{"loc": ["query", name], "msg": f"query parameter '{name}' given more than once"}]


def test_single_parameters_still_pass(app: Flask) -> None:
    reply = app.test_client().get("/api/v1/reports/lanes?kind=tsp&tenant=acme",
                                  headers={"Authorization": f"Bearer {_token(app)}"})
    assert reply.status_code == 200, reply.get_data(as_text=True)
