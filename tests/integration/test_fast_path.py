"""The sync fast path is never stuck behind batch work: interactive attempts wait on their lane's
interactive queue, which every worker of the lane polls first and a reserved worker serves alone."""

from __future__ import annotations

import time

import requests

from tests.integration import problems
from tests.integration.stack import Stack, wait_for

RESERVED = "heuristic.interactive"


def _running(stack: Stack, token: str, job_ids: list[str]) -> bool:
    return any(stack.job(token, job_id).json()["status"] == "running" for job_id in job_ids)


def test_a_sync_job_answers_within_its_budget_while_batch_work_holds_the_lanes_worker(stack: Stack,
                                                                                    token: str) -> None:
    stack.start_worker("heuristic", queues=RESERVED, key=RESERVED)
    batch: list[str] = []
    try:
        for seed in range(3):
            reply = stack.solve(token, {"problem": problems.cvrp(60, seed), "solver": "heuristic"}, budget_ms=8000)
            assert reply.status_code == 202, reply.text
            batch.append(reply.json()["job_id"])
        wait_for(lambda: _running(stack, token, batch), 20, "a batch CVRP running on the heuristic worker")
        for attempt in range(3):
            started = time.monotonic()
            reply = stack.solve(token, {"problem": problems.tsp(8, attempt), "solver": "heuristic"}, budget_ms=1000)
            elapsed_ms = (time.monotonic() - started) * 1000
            assert reply.status_code == 200, reply.text
            job = reply.json()
            assert job["status"] == "succeeded" and job["request"]["priority"] == "interactive", job
            assert elapsed_ms < 1000 + 300, elapsed_ms  # the budget, and the HTTP round trip around it
        assert _running(stack, token, batch)  # the batch work was still holding the lane's own worker
    finally:
        for job_id in batch:
            requests.delete(f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.headers(token), timeout=10)
        for job_id in batch:
            stack.wait_job(token, job_id, timeout=30)
        stack.stop_worker(RESERVED)


def test_an_async_job_may_ask_to_be_interactive_and_a_sync_one_to_wait_as_batch(stack: Stack, token: str) -> None:
    reply = stack.solve(token, {"problem": problems.tsp(6), "solver": "heuristic", "priority": "interactive"},
                        budget_ms=5000)
    assert reply.status_code == 202, reply.text
    assert stack.wait_job(token, reply.json()["job_id"])["request"]["priority"] == "interactive"
    reply = stack.solve(token, {"problem": problems.tsp(6), "solver": "heuristic"}, budget_ms=5000)
    assert stack.wait_job(token, reply.json()["job_id"])["request"]["priority"] == "batch"
    reply = stack.solve(token, {"problem": problems.tsp(6), "solver": "heuristic", "priority": "urgent"})
    assert reply.status_code == 422 and reply.json()["errors"][0]["loc"] == ["body", "priority"]
