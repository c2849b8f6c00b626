"""Fault drills per lane: start-up defaults from ``QGATE_FAULTS``, runtime changes through Redis.

Operators rehearse a brownout on a running fleet with ``qgate faults set|clear|show``: the drills live in
one Redis hash (field = lane, value = the lane's drill as JSON), a worker reads its lane's field once per
attempt (one HGET), and every change is written together with its audit event in one MULTI. A lane
without a field runs its start-up default; ``clear`` stores an explicit "no drill" so that it also
silences a default, and ``clear --default`` drops the field to return to it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

from audit.channel import emit
from solvers.registry import LANES

FAULTS_KEY = "qgate:faults"
KNOBS = ("fail_rate", "delay_ms", "delay_jitter", "readout_flip")


class FaultSpecError(ValueError):
    """A drill cannot be read; the message names the item."""


@dataclass(frozen=True)
class LaneFault:
    """Injected trouble for one lane: fail this share of attempts, or sleep before solving.

    With ``delay_jitter`` the sleep is log-normal with median ``delay_ms`` and sigma ``delay_jitter``,
    so an emulated queue has a long tail like a real provider's rather than a constant.

    ``readout_flip`` rehearses calibration drift on the emulated QPU: each measured bit of each shot is
    flipped with that probability on top of the device's own noise model (a symmetric readout error).
    Jobs still succeed, only worse; the calibration canary is what notices. Real providers ignore it.
    """

    fail_rate: float = 0.0
    delay_ms: int = 0
    delay_jitter: float = 0.0
    readout_flip: float = 0.0

    def delay_s(self, rng: random.Random | None = None) -> float:
        if self.delay_ms <= 0:
            return 0.0
        median = self.delay_ms / 1000
        if self.delay_jitter <= 0:
            return median
        return (rng or random).lognormvariate(math.log(median), self.delay_jitter)

    def fails(self, rng: random.Random | None = None) -> bool:
        return self.fail_rate > 0 and (rng or random).random() < self.fail_rate

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def of(cls, values: Mapping[str, float]) -> "LaneFault":
        return cls(fail_rate=float(values.get("fail_rate", 0.0)), delay_ms=int(values.get("delay_ms", 0)),
                   delay_jitter=float(values.get("delay_jitter", 0.0)),
                   readout_flip=float(values.get("readout_flip", 0.0)))


def parse_items(items: Iterable[str]) -> dict[str, dict[str, float]]:
    """``["qpu.delay_ms=8000", "qpu.fail_rate=0.3"]`` as ``{"qpu": {"delay_ms": 8000.0, ...}}``."""
    faults: dict[str, dict[str, float]] = {}
    for item in filter(None, (part.strip() for part in items)):
        key, sep, value = item.partition("=")
        lane, dot, knob = key.strip().partition(".")
        if not sep or not dot or lane not in LANES or knob not in KNOBS:
            raise FaultSpecError(f"cannot read {item!r} (want lane.fail_rate=X, lane.delay_ms=N, "
                                 f"lane.delay_jitter=S or lane.readout_flip=P, lane one of {', '.join(LANES)})")
        try:
            number = float(value)
        except ValueError:
            raise FaultSpecError(f"{item!r} needs a number") from None
        if not math.isfinite(number) or number < 0 or (knob in ("fail_rate", "readout_flip") and number > 1):
            raise FaultSpecError(f"{item!r} is out of range")
        faults.setdefault(lane, {})[knob] = number
    return faults


def parse_spec(spec: str) -> dict[str, LaneFault]:
    """``QGATE_FAULTS`` such as ``qpu.fail_rate=1.0,sim.delay_ms=3000``."""
    return {lane: LaneFault.of(knobs) for lane, knobs in parse_items(spec.split(",")).items()}


class FaultBoard:
    """The fleet's drills in Redis over the start-up ``defaults`` of this process."""

    def __init__(self, redis: Any, defaults: Mapping[str, LaneFault] | None = None) -> None:
        self.redis, self.defaults = redis, dict(defaults or {})

    def fault(self, lane: str) -> LaneFault:
        """The lane's drill now: one HGET. Redis away means the start-up default: a drill never fails
        an attempt by itself."""
        try:
            raw = self.redis.hget(FAULTS_KEY, lane)
        except Exception:  # redis.ConnectionError and friends
            raw = None
        return LaneFault.of(json.loads(raw)) if raw else self.defaults.get(lane, LaneFault())

    def overrides(self) -> dict[str, LaneFault]:
        return {lane: LaneFault.of(json.loads(raw)) for lane, raw in self.redis.hgetall(FAULTS_KEY).items()}

    def show(self) -> dict[str, dict[str, Any]]:
        stored = self.overrides()
        return {lane: {"source": "runtime" if lane in stored else "default",
                       **(stored.get(lane) or self.defaults.get(lane, LaneFault())).as_dict()} for lane in LANES}

    def set(self, changes: Mapping[str, Mapping[str, float]], by: str) -> dict[str, LaneFault]:
        """Change the named knobs; a lane's other knobs keep their runtime value (zero when it has none)."""
        def change(stored: dict[str, LaneFault]) -> dict[str, LaneFault | None]:
            return {lane: LaneFault.of({**stored.get(lane, LaneFault()).as_dict(), **knobs})
                    for lane, knobs in changes.items()}

        return self._write(change, "set", by)

    def clear(self, lanes: Iterable[str], by: str, to_default: bool = False) -> dict[str, LaneFault]:
        """Stop the lanes' drills (``to_default``: drop the runtime drill, back to QGATE_FAULTS)."""
        cleared: LaneFault | None = None if to_default else LaneFault()
        chosen = list(lanes)
        return self._write(lambda _: {lane: cleared for lane in chosen}, "reset" if to_default else "clear", by)

    def _write(self, change: Callable[[dict[str, LaneFault]], dict[str, LaneFault | None]], action: str,
               by: str) -> dict[str, LaneFault]:
        """Apply ``change`` to the stored drills (None drops a lane's) with its audit event, in one MULTI."""
        def apply(pipe: Any) -> dict[str, LaneFault]:
            stored = {lane: LaneFault.of(json.loads(raw)) for lane, raw in pipe.hgetall(FAULTS_KEY).items()}
            new = change(stored)
            pipe.multi()
            for lane, fault in new.items():
                if fault is None:
                    pipe.hdel(FAULTS_KEY, lane)
                else:
                    pipe.hset(FAULTS_KEY, lane, json.dumps(fault.as_dict()))
            emit(pipe, "faults.changed", action=action, by=by,
                 lanes={lane: (fault.as_dict() if fault else "default") for lane, fault in new.items()})
            return {lane: fault for lane, fault in new.items() if fault is not None}

        return self.redis.transaction(apply, FAULTS_KEY, value_from_callable=True)
