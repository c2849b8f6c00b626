from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.stack import Stack, running_stack

SHARED_STACK_RATES = {f"QGATE_RATE_{name}": "1000000/minute" for name in
                      ("SOLVE_PER_TENANT", "SOLVE_PER_CLIENT", "READ_PER_TENANT", "READ_PER_CLIENT")}
ALL_SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic tier:premium audit:read ops:read"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The suites that share this stack send thousands of requests a minute (the fuzz suite alone ~2,000):
    # limits high enough never to bind here; tests/integration/test_rate_limits.py tests them on its own stack.
    with running_stack(Path(tmp_path_factory.mktemp("stack")), **SHARED_STACK_RATES) as running:
        yield running


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Stack]:
    """A redis-server of the test's own on a free port, for tests that need Redis and nothing else."""
    rig = Stack(tmp_path)
    rig.start_redis()
    yield rig
    rig.stop_redis()


@pytest.fixture(scope="session")
def client(stack: Stack) -> dict[str, Any]:
    return stack.create_client("acme", ALL_SCOPES)


@pytest.fixture(scope="session")
def token(stack: Stack, client: dict[str, Any]) -> str:
    return stack.token(client)


@pytest.fixture(autouse=True)
def _lanes_start_fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test on the shared stack starts with no lane figures and closed breakers: tests break lanes
    on purpose (fail, delay, kill), and what one taught the planner must not reroute the next one's jobs."""
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").forget_lane_figures()
    yield


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "stack" in request.fixturenames:
        running: Stack = request.getfixturevalue("stack")
        for proc in [running.web, *running.workers.values(), running.audit, running.watchdog]:
            if proc is not None:
                print(f"--- {proc.name} ---\n{proc.tail(30)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
