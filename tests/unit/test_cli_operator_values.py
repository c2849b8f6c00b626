"""`qgate limits set` and `qgate shadow set` with values no tenant or job can have: exit 2 and one line.

They are refused before Redis is asked (REDIS_URL here names a port nothing listens on: a value that got
as far as Redis would end in a connection error, exit 3). A tenant of ``acme/eu`` is the case that
matters most: the spend book keys a business unit's allowance as ``tenant/unit``, so ``limits set
--tenant acme/eu`` silently capped acme's business unit ``eu``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.stack import free_port

ROOT = Path(__file__).parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-m", "qgate_cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=env)


@pytest.mark.parametrize("tenant", ["", "acme/eu", "a\x01b", "a" * 10_000])
def test_limits_set_refuses_a_value_that_is_no_tenant(tenant: str) -> None:
    done = _cli("limits", "set", "--tenant", tenant, "--qpu-shots-per-day", "5")
    assert done.returncode == 2 and done.stderr.startswith("qgate: limits: not a tenant name"), done.stderr[-300:]


@pytest.mark.parametrize("unit", ["", "x" * 1025])
def test_limits_set_refuses_a_business_unit_no_job_can_name(unit: str) -> None:
    done = _cli("limits", "set", "--tenant", "acme", "--business-unit", unit, "--qpu-shots-per-day", "5")
    assert done.returncode == 2 and done.stderr.startswith("qgate: limits: business unit"), done.stderr[-300:]


@pytest.mark.parametrize("lanes", [[",,,"], [",", ""]])
def test_shadow_set_refuses_no_lane_at_all(lanes: list[str]) -> None:
    """``shadow set --lanes ,,,`` printed the defaults and exit 0, having cleared the tenant's lanes."""
    done = _cli("shadow", "set", "--tenant", "acme", "--lanes", *lanes)
    assert done.returncode == 2 and "at least one lane" in done.stderr, done.stderr[-300:]
