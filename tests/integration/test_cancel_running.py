"""DELETE on a running job reaches its solver: the worker is free for the next job within about a second."""

from __future__ import annotations

import time

import requests

from tests.integration import problems
from tests.integration.stack import Stack, wait_for


def test_cancelling_a_running_cvrp_frees_the_heuristic_worker_within_about_a_second(stack: Stack,
                                                                                     token: str) -> None:
    reply = stack.solve(token, {"problem": problems.cvrp(60, 7), "solver": "heuristic"}, budget_ms=30_000)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    wait_for(lambda: stack.job(token, job_id).json()["status"] == "running", 20, "the CVRP running")
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    reply = requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(token), timeout=10)
    assert reply.status_code == 200 and reply.json()["status"] == "cancelled", reply.text
    # the heuristic worker runs one attempt at a time: the next batch job can only start once the CVRP stopped
    follow = stack.solve(token, {"problem": problems.tsp(8), "solver": "heuristic"}, budget_ms=20_000).json()
    done = stack.wait_job(token, follow["job_id"], timeout=25)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - cancelled_at < 5, "the cancelled CVRP kept its worker"
    stopped = [e for e in stack.wait_audited(job_id, "attempt.stopped") if e["type"] == "attempt.stopped"]
    assert stopped[0]["data"]["lane"] == "heuristic" and stopped[0]["data"]["ran_ms"] < 30_000
    again = requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(token), timeout=10)
    assert again.status_code == 409
