"""The sim lane: circuits on qiskit-aer."""

from workers.app import app
from workers.attempt import run_attempt
from workers.dispatch import task_name

LANE = "sim"


@app.task(name=task_name(LANE), bind=True)
def solve(self, job_id: str, attempt: int) -> str:  # type: ignore[no-untyped-def]
    return run_attempt(LANE, job_id, attempt, self.request.hostname or "unknown")
