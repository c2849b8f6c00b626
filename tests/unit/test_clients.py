from __future__ import annotations

import fakeredis
import pytest

from api.clients import ClientStore


def test_secret_is_stored_hashed_and_checked() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = ClientStore(redis)
    client, secret = store.create("acme", ["quantum:solve", "solver:heuristic"])
    raw = redis.get(f"qgate:client:{client.client_id}")
    assert secret not in raw
    assert store.authenticate(client.client_id, secret) == client
    assert store.authenticate(client.client_id, secret + "x") is None
    assert store.authenticate("qc_unknown", secret) is None


@pytest.mark.parametrize("tenant,scopes", [("bad tenant", ["quantum:solve"]), ("acme", ["root:all"])])
def test_bad_tenants_and_scopes_are_refused(tenant, scopes) -> None:
    with pytest.raises(ValueError):
        ClientStore(fakeredis.FakeRedis(decode_responses=True)).create(tenant, scopes)
