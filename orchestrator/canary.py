"""One round of the calibration canary: run the reference circuit on the lane, keep and judge the reading."""

from __future__ import annotations

import random
import time
from typing import Any

from routing.canary import CanaryConfig, record
from solvers.canary import run_canary


def canary_round(solver: Any, redis: Any, lane: str, config: CanaryConfig, log: Any = None) -> dict[str, Any]:
    """Run the GHZ canary through ``solver`` and record it; the reading, with ``breaker`` set when it
    changed the lane's breaker. The seed is fresh each round (recorded with the reading): a canary that
    always drew the same shots would hide sampling noise rather than measure it."""
    seed = random.SystemRandom().randrange(2**31)
    reading = run_canary(solver, qubits=config.qubits, shots=config.shots, seed=seed,
                         time_limit_s=config.time_limit_s()).as_dict()
    reading["seed"] = seed
    changed = record(redis, lane, reading, config, time.time())
    if changed:
        reading["breaker"] = changed
    if log is not None:
        log.info("canary_reading", lane=lane, **{k: v for k, v in reading.items() if k != "at"})
    return reading
