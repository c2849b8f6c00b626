"""The policy in force: reloaded when its files change, audited once fleet-wide, and never replaced by a
policy that cannot be loaded (nor by data whose rates or allowances are bad), which is counted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fakeredis
import pytest

from api.services import policy_rates, policy_tenants
from audit.channel import STREAM, decode_event
from jobs.spend import SpendBook, SpendError
from policy.engine import DEFAULT_DATA, DEFAULT_POLICY, PolicyBundle, PolicyError
from policy.source import PolicySource
from ratelimit.policy import PolicyError as RateError, RatePolicy
from telemetry.metrics import COUNTERS

RATES = {"solve_per_tenant": "600/minute", "solve_per_client": "300/minute", "read_per_tenant": "6000/minute",
         "read_per_client": "3000/minute"}


def _validate(bundle: PolicyBundle) -> None:
    try:
        RatePolicy.build(RATES, policy_rates(bundle))
        SpendBook(None, lambda: policy_tenants(bundle)).policy_allowances()
    except (RateError, SpendError) as exc:
        raise PolicyError(str(exc)) from None


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copy(DEFAULT_POLICY, tmp_path / "qgate.rego")
    shutil.copy(DEFAULT_DATA, tmp_path / "data.json")
    return tmp_path / "qgate.rego", tmp_path / "data.json"


def _write(path: Path, text: str) -> None:
    path.with_suffix(".tmp").write_text(text)
    os.replace(path.with_suffix(".tmp"), path)


def _events(redis: fakeredis.FakeRedis, kind: str) -> list[dict]:
    return [e for e in (decode_event(f) for _, f in redis.xrange(STREAM)) if e["type"] == kind]


def test_changes_are_picked_up_and_audited_once(files: tuple[Path, Path]) -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    one = PolicySource(*files, redis=redis, poll_s=0, validate=_validate)
    two = PolicySource(*files, redis=redis, poll_s=0, validate=_validate)  # a second process
    first = one.current().sha256
    assert two.current().sha256 == first and len(_events(redis, "policy.changed")) == 1
    _write(files[1], json.dumps({"qgate": {"tenants": {"acme": {"rates": {"solve_per_tenant": "5/second"}}}}}))
    assert one.current().sha256 != first and two.current().sha256 == one.current().sha256
    changed = _events(redis, "policy.changed")
    assert len(changed) == 2 and changed[-1]["data"]["previous"] == first
    assert policy_rates(one.current()) == {"acme": {"solve_per_tenant": "5/second"}}


@pytest.mark.parametrize("breakage", ["rego", "data-json", "data-rate", "data-spend", "missing"])
def test_a_bad_change_keeps_the_last_good_and_is_counted(files: tuple[Path, Path], breakage: str) -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    source = PolicySource(*files, redis=redis, poll_s=0, validate=_validate)
    good = source.current()
    if breakage == "rego":
        _write(files[0], files[0].read_text() + "\nnot rego {")
    elif breakage == "data-json":
        _write(files[1], "{")
    elif breakage == "data-rate":
        _write(files[1], json.dumps({"qgate": {"tenants": {"a": {"rates": {"solve_per_tenant": "lots"}}}}}))
    elif breakage == "data-spend":
        _write(files[1], json.dumps({"qgate": {"tenants": {"a": {"qpu_spend": {"usd_per_day": -1}}}}}))
    else:
        files[0].unlink()
    assert source.current() is good and source.last_error
    assert int(redis.hget(COUNTERS, "policy_reload_failures")) == 1
    assert source.decide({"tenant": "x", "scopes": [], "request": {"solver": "auto", "cost_tier": "standard",
                                                                  "metadata": {}},
                          "lanes": {lane: {"cost_usd": 0.0, "provider": None, "region": "local"}
                                    for lane in ("qpu", "sim", "heuristic")},
                          "config": {"standard_tier_max_usd": 0.0}}).access["qpu"]


def test_no_good_policy_at_start_refuses(files: tuple[Path, Path]) -> None:
    _write(files[0], "package qgate.policy\n")
    with pytest.raises(PolicyError):
        PolicySource(*files)
