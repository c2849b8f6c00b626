"""The qpu lane: circuits on a QPU through an adapter (the emulated device by default)."""

from workers.app import app
from workers.attempt import run_attempt
from workers.dispatch import task_name

LANE = "qpu"


@app.task(name=task_name(LANE), bind=True)
def solve(self, job_id: str, attempt: int) -> str:  # type: ignore[no-untyped-def]
    return run_attempt(LANE, job_id, attempt, self.request.hostname or "unknown")
