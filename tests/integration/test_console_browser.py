"""The console in a real browser: Debian's headless Chromium driven by Playwright, against a stack of its
own (a QPU price, so that cost is not zero) with real jobs on every lane.

It signs in, reads each page and finds the numbers the API reports (finished jobs per lane, a job's
attempts, a tenant's estimated USD), follows a job from the list to its page, and saves a screenshot of
each page under a printed artefact folder (``QGATE_ARTEFACTS`` or pytest's tmp path). A client without
``ops:read`` is refused; neither the token nor the secret ever appears in a page URL or the web process's
log (gunicorn's access log included). History and the session survive a restart of the web process and
of Redis.

Chromium must be installed (``make test`` installs Debian's ``chromium`` when it is root): without it
this test fails, it never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.integration import problems
from tests.integration.conftest import SHARED_STACK_RATES
from tests.integration.stack import Stack, running_stack

from playwright.sync_api import Browser, Page, sync_playwright

PRICE_ENV = {"QGATE_QPU_PRICE_PER_TASK_USD": "0.01", "QGATE_QPU_PRICE_PER_SHOT_USD": "0.0001"}
SHOTS = 1024
EXPECTED_QPU_USD = 0.01 + 0.0001 * SHOTS


def chromium_binary() -> str:
    found = os.environ.get("QGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: make test installs it (apt-get install chromium) when run as root"
    return found


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("console")), **SHARED_STACK_RATES, **PRICE_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ["QGATE_ARTEFACTS"]) / "console" if os.environ.get("QGATE_ARTEFACTS") else \
        tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_binary(), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield launched
        launched.close()


def _jobs(stack: Stack, token: str) -> dict[str, Any]:
    """Real jobs: three TSPs (heuristic), one QPU circuit with a business unit, one that falls back
    from sim to heuristic; all waited for."""
    ids: dict[str, Any] = {"tsp": []}
    for seed in range(3):
        reply = stack.solve(token, {"problem": problems.tsp(6, seed=seed), "solver": "heuristic",
                                    "metadata": {"business_unit": "west"}}, budget_ms=1000)
        assert reply.status_code == 200, reply.text
        ids["tsp"].append(reply.json()["job_id"])
    reply = stack.solve(token, {"problem": problems.circuit(shots=SHOTS), "solver": "qpu", "cost_tier": "premium",
                                "metadata": {"business_unit": "east"}}, budget_ms=60_000)
    assert reply.status_code in (200, 202), reply.text
    ids["qpu"] = reply.json()["job_id"]
    for job_id in [*ids["tsp"], ids["qpu"]]:
        assert stack.wait_job(token, job_id, timeout=90)["status"] == "succeeded"
    return ids


def _sign_in(page: Page, stack: Stack, client: dict[str, Any]) -> None:
    page.goto(stack.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.fill("input[name=client_id]", client["client_id"])
    page.fill("input[name=client_secret]", client["client_secret"])
    page.click("button[type=submit]")
    page.wait_for_load_state()


def _lane_finished(page: Page) -> dict[str, int]:
    return {lane: int(page.inner_text(f"#lanes tr[data-lane={lane}] td.finished"))
            for lane in ("qpu", "sim", "heuristic")}


def test_the_console_in_a_real_browser(console_stack: Stack, browser: Browser, artefacts: Path) -> None:
    stack = console_stack
    operator = stack.create_client("ops", "ops:read audit:read")
    tenant = stack.create_client("bu-corp", "quantum:solve solver:qpu solver:sim solver:heuristic tier:premium")
    outsider = stack.create_client("bu-corp", "quantum:solve audit:read")
    tenant_token, ops_token = stack.token(tenant), stack.token(operator)
    ids = _jobs(stack, tenant_token)

    # What the API reports.
    by_lane = requests.get(stack.url + "/api/v1/usage", params={"group_by": "lane", "tenant": "*"},
                           headers=stack.headers(ops_token), timeout=10).json()["rows"]
    api_lane_jobs = {lane: sum(r["jobs"] for r in by_lane if r["group"] == lane) for lane in ("qpu", "sim", "heuristic")}
    assert api_lane_jobs["heuristic"] == 3 and api_lane_jobs["qpu"] == 1
    qpu_job = stack.job(tenant_token, ids["qpu"]).json()
    usage = requests.get(stack.url + "/api/v1/usage", headers=stack.headers(tenant_token), timeout=10).json()
    api_usd = sum(r["usd"] for r in usage["rows"])
    assert api_usd == pytest.approx(EXPECTED_QPU_USD)
    csv_reply = requests.get(stack.url + "/api/v1/usage", params={"group_by": "metadata.business_unit"},
                             headers=stack.headers(tenant_token, Accept="text/csv"), timeout=10)
    assert csv_reply.headers["Content-Type"].startswith("text/csv") and ",east," in csv_reply.text

    context = browser.new_context()
    page = context.new_page()
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))

    # A client without ops:read is refused, and gets no session.
    _sign_in(page, stack, outsider)
    assert "no ops:read" in page.inner_text("#error")
    page.screenshot(path=str(artefacts / "refused.png"))
    page.goto(stack.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")

    _sign_in(page, stack, operator)
    assert page.url.endswith("/dashboard"), page.url
    console_tokens = [stack.redis().get(key) for key in stack.redis().scan_iter("qgate:console:session:*")]
    assert console_tokens, "no server-side session"
    cookie = next(c for c in context.cookies() if c["name"] == "qgate_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert _lane_finished(page) == api_lane_jobs
    for lane in ("qpu", "sim", "heuristic"):  # breaker state as the ops API reports it; a predicted wait cell
        api_breaker = requests.get(f"{stack.url}/api/v1/ops/lanes/{lane}/canary", headers=stack.headers(ops_token),
                                   timeout=10).json()["breaker"]["state"]
        assert page.inner_text(f"#lanes tr[data-lane={lane}] td.breaker").startswith(api_breaker.replace("_", "-"))
        assert page.locator(f"#lanes tr[data-lane={lane}] td.predicted-wait").count() == 1
    page.wait_for_selector("#chart .uplot")
    page.screenshot(path=str(artefacts / "overview.png"), full_page=True)

    page.click("nav >> text=Jobs")
    page.wait_for_selector("#jobs")
    page.screenshot(path=str(artefacts / "jobs.png"), full_page=True)
    page.click(f"a.job-link >> text={ids['qpu']}")
    page.wait_for_selector("#job-id")
    assert page.url.endswith(f"/dashboard/jobs/{ids['qpu']}")
    assert page.locator("#attempts tr.attempt").count() == len(qpu_job["attempts"])
    assert qpu_job["attempts"][0]["outcome"] in page.inner_text("#attempts")
    assert f"{qpu_job['cost_estimate']['usd']:.6f}" in page.inner_text("#job-cost")
    assert len(qpu_job.get("deliveries") or []) == page.locator("#deliveries td.status").count()
    page.screenshot(path=str(artefacts / "job.png"), full_page=True)

    page.goto(stack.url + "/dashboard/tenants?meta=business_unit")
    assert page.inner_text("#tenant-totals tr[data-tenant=bu-corp] td.usd") == f"{api_usd:.6f}"
    assert "east" in page.inner_text("#meta-days") and "west" in page.inner_text("#meta-days")
    page.screenshot(path=str(artefacts / "tenants.png"), full_page=True)

    page.goto(stack.url + "/dashboard/audit")
    assert "entries" in page.inner_text("#log-size")
    page.screenshot(path=str(artefacts / "audit.png"), full_page=True)
    # "Verify now": a CSRF-checked POST that runs audit/verify.py over the log and shows its result.
    forged = context.request.post(stack.url + "/dashboard/audit/verify", form={"csrf_token": "forged"},
                                  max_redirects=0)
    assert forged.status == 403 and stack.redis().get("qgate:console:audit:last_verification") is None
    page.click("#verify-now")
    page.wait_for_selector("#last-verification strong")
    shown = page.inner_text("#last-verification")
    api_verify = requests.get(stack.url + "/api/v1/audit/verify", headers=stack.headers(ops_token), timeout=30).json()
    assert api_verify["valid"] and "valid" in shown and "INVALID" not in shown
    shown_entries = int(re.search(r"(\d+) entries", shown).group(1))
    assert 0 < shown_entries <= api_verify["entries"]
    page.screenshot(path=str(artefacts / "audit-verified.png"), full_page=True)

    # History (and the session) survive a restart of the web process and of Redis.
    stack.web.stop()
    stack.stop_redis()
    stack.start_redis()
    stack.start_web()
    page.goto(stack.url + "/dashboard")
    assert page.url.endswith("/dashboard"), "the session did not survive the restart"
    assert _lane_finished(page) == api_lane_jobs
    page.screenshot(path=str(artefacts / "overview-after-restart.png"), full_page=True)

    # Sign-out ends the session server-side.
    page.click("header button[type=submit]")
    page.wait_for_load_state()
    page.goto(stack.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    context.close()

    secrets_seen = [tenant_token, ops_token, operator["client_secret"], outsider["client_secret"], *console_tokens]
    for url in visited:
        assert not any(secret in url for secret in secrets_seen), url
        assert "token" not in url and "secret" not in url, url
    time.sleep(0.5)  # the access log line of the last request
    web_log = (stack.logs / "web.log").read_text(errors="replace")
    assert "/dashboard/login" in web_log  # the access log is there, and holds the sign-in
    for secret in secrets_seen:
        assert secret not in web_log, "a token or secret in the web process's log"
