"""Lane telemetry, fleet-wide in Redis: what each lane's attempts took, per problem class.

For every lane and problem class (kind × a power-of-two size bucket) one Redis hash holds the sample
count, exponential moving averages (EMA) of run time, queue wait, failure and timeout rate, and two
exponentially decayed histograms (run time and queue wait) over fixed log-spaced buckets, from which
the planner reads a tail quantile. A second hash per lane (class ``*``) aggregates every class: its run
time is what the lane's queue drains at.

Why decayed histograms rather than a DDSketch: the buckets are DDSketch's own (log-spaced, relative
error γ−1 = 25 % at the bucket's upper edge, which never understates), but kept as fields of a Redis
hash they update in place with one small Lua script, inside the MULTI that concludes the attempt, with
no (de)serialisation of a sketch per update, and stay mergeable (add the buckets). Each update first
multiplies every bucket by 1−α, so the tail follows the lane within a few samples — a DDSketch keeps
all history equally, which would hide a brownout behind hours of good samples.

Censoring: a timed-out attempt only says the lane needed *more* than it was given; it is recorded at
CENSORED_FACTOR × what it used, so a lane that keeps timing out predicts beyond the shares it got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

BASE_S = 0.001  # the upper edge of bucket 0
GAMMA = 1.25  # bucket i holds (BASE_S·γ^(i−1), BASE_S·γ^i]
CENSORED_FACTOR = 2.0
ALL_CLASSES = "*"
CONCLUDED = {"attempt.succeeded": "ok", "attempt.failed": "fail", "attempt.timeout": "timeout"}

# KEYS: the hashes to update (the class's and the lane's). ARGV: alpha, now, outcome (ok|fail|timeout),
# wait_s or '', wait bucket, run_s or '', run bucket, ttl_s.
_UPDATE = """
local alpha = tonumber(ARGV[1])
local function ema(key, field, x)
  local old = redis.call('HGET', key, field)
  local v = x
  if old then v = tonumber(old) + alpha * (x - tonumber(old)) end
  redis.call('HSET', key, field, string.format('%.6g', v))
end
local function hist(key, prefix, bucket)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == prefix then
      local w = tonumber(all[i + 1]) * (1 - alpha)
      if w < 0.001 then
        redis.call('HDEL', key, all[i])
      else
        redis.call('HSET', key, all[i], string.format('%.6g', w))
      end
    end
  end
  redis.call('HINCRBYFLOAT', key, prefix .. bucket, 1)
end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  ema(key, 'fail', ARGV[3] == 'fail' and 1 or 0)
  ema(key, 'timeout', ARGV[3] == 'timeout' and 1 or 0)
  if ARGV[4] ~= '' then ema(key, 'wait', tonumber(ARGV[4])); hist(key, 'w:', ARGV[5]) end
  if ARGV[6] ~= '' then ema(key, 'run', tonumber(ARGV[6])); hist(key, 'r:', ARGV[7]) end
  redis.call('HSET', key, 'at', ARGV[2])
  redis.call('EXPIRE', key, tonumber(ARGV[8]))
end
return 1
"""


def telemetry_key(lane: str, problem_class: str) -> str:
    return f"qgate:lane:{lane}:tel:{problem_class}"


def problem_size(problem: Any) -> int:
    """Nodes for routing problems, loads for assignment, variables for QUBO, qubits for circuits."""
    kind = problem.kind
    if kind in ("tsp", "cvrp"):
        return int(problem.size)
    if kind == "assignment":
        return len(problem.weights)
    if kind == "qubo":
        return int(problem.n)
    return int(problem.num_qubits)


def problem_class(problem: Any) -> str:
    """``kind:S`` where S is the smallest power of two (at least 4) that holds the problem's size."""
    size = max(problem_size(problem), 1)
    return f"{problem.kind}:{max(4, 1 << (size - 1).bit_length())}"


def bucket(seconds: float) -> int:
    return max(0, math.ceil(math.log(max(seconds, BASE_S) / BASE_S, GAMMA) - 1e-9))


def bucket_upper_s(index: int) -> float:
    return BASE_S * GAMMA ** index


def quantile(weights: Mapping[int, float], q: float) -> float | None:
    """The upper edge of the bucket where the cumulative weight reaches ``q``: never below the truth by
    more than one bucket's width, and never below it at all for values inside the bucket."""
    total = sum(weights.values())
    if total <= 0:
        return None
    running = 0.0
    for index in sorted(weights):
        running += weights[index]
        if running >= q * total - 1e-12:
            return bucket_upper_s(index)
    return bucket_upper_s(max(weights))


@dataclass(frozen=True)
class Stats:
    """One telemetry hash, read back."""

    samples: int = 0
    run_ema_s: float | None = None
    wait_ema_s: float | None = None
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    updated_at: float | None = None
    run_hist: Mapping[int, float] | None = None
    wait_hist: Mapping[int, float] | None = None

    @classmethod
    def of(cls, raw: Mapping[str, str]) -> "Stats":
        if not raw:
            return cls()

        def hist(prefix: str) -> dict[int, float]:
            return {int(k[2:]): float(v) for k, v in raw.items() if k.startswith(prefix)}

        def number(name: str) -> float | None:
            return float(raw[name]) if name in raw else None

        return cls(samples=int(raw.get("n", 0)), run_ema_s=number("run"), wait_ema_s=number("wait"),
                   fail_rate=number("fail") or 0.0, timeout_rate=number("timeout") or 0.0,
                   updated_at=number("at"), run_hist=hist("r:"), wait_hist=hist("w:"))

    def run_q(self, q: float) -> float | None:
        return quantile(self.run_hist or {}, q)

    def wait_q(self, q: float) -> float | None:
        return quantile(self.wait_hist or {}, q)


@dataclass(frozen=True)
class Sample:
    """What one concluded attempt says about its lane."""

    lane: str
    outcome: str  # ok | fail | timeout
    wait_s: float | None
    run_s: float | None


def sample_of(event: tuple[str, Mapping[str, Any]], started: bool) -> Sample | None:
    """The sample an ``attempt.<outcome>`` event gives; None for outcomes that say nothing of the lane
    (skipped, cancelled). ``started``: whether a worker had taken the attempt."""
    event_type, data = event
    outcome = CONCLUDED.get(event_type)
    if outcome is None:
        return None
    queued_s, ran_s = data["queued_ms"] / 1000, data["duration_ms"] / 1000
    if not started:  # it never left the queue: a wait at least this long, and nothing about run time
        return Sample(data["lane"], outcome, queued_s * (CENSORED_FACTOR if outcome == "timeout" else 1), None)
    if outcome == "timeout":
        return Sample(data["lane"], outcome, queued_s, ran_s * CENSORED_FACTOR)
    return Sample(data["lane"], outcome, queued_s, ran_s if outcome == "ok" else None)


def lease_of(before: Any, attempt: Any) -> Any:
    """The attempt in flight numbered ``attempt`` before the change: the job's ``current`` one, or one of
    a portfolio's ``racing`` leases; None when it is neither."""
    if attempt is None or before is None:
        return None
    leases = [getattr(before, "current", None), *(getattr(before, "racing", None) or [])]
    return next((lease for lease in leases if lease is not None and lease.n == attempt), None)


def concluded_lanes(before: Any, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The lanes whose attempts in flight the change concluded (ok, fail or timeout), in event order
    without repeats: a fallback's one, or several of a portfolio's when the watchdog expires them together."""
    lanes: list[str] = []
    for event_type, data in events:
        lease = lease_of(before, data.get("attempt")) if event_type in CONCLUDED else None
        if lease is not None and lease.lane == data.get("lane") and lease.lane not in lanes:
            lanes.append(lease.lane)
    return lanes


@dataclass(frozen=True)
class TelemetryConfig:
    alpha: float = 0.2  # EMA weight of the newest sample; also each histogram's decay per sample
    ttl_s: int = 7 * 24 * 3600


class LaneTelemetry:
    """Writes samples into a transaction, reads a lane's figures back."""

    def __init__(self, config: TelemetryConfig = TelemetryConfig()) -> None:
        self.config = config

    def record(self, pipe: Any, sample: Sample, problem_class: str | None, now: float) -> None:
        """Queue the update on ``pipe`` (a MULTI): one EVAL, atomic with the attempt's conclusion."""
        keys = [telemetry_key(sample.lane, ALL_CLASSES)]
        if problem_class:
            keys.insert(0, telemetry_key(sample.lane, problem_class))
        wait, run = sample.wait_s, sample.run_s
        pipe.eval(_UPDATE, len(keys), *keys, self.config.alpha, repr(now), sample.outcome,
                  "" if wait is None else repr(wait), bucket(wait or 0), "" if run is None else repr(run),
                  bucket(run or 0), self.config.ttl_s)

    def prepare(self, pipe: Any, before: Any, events: Any) -> None:
        return None  # the update is a script: nothing to read or WATCH first

    def observe(self, pipe: Any, before: Any, job: Any, events: Iterable[tuple[str, Mapping[str, Any]]],
                now: float, prepared: Any = None) -> None:
        """The store's hook: record each attempt the change concluded, a fallback's ``current`` one or a
        portfolio's racing ones alike (a race's cancelled losers give no sample: see ``sample_of``)."""
        for event in events:
            lease = lease_of(before, event[1].get("attempt"))
            sample = sample_of(event, bool(lease and lease.started_at is not None))
            if sample is not None:
                self.record(pipe, sample, getattr(job, "problem_class", None), now)

    @staticmethod
    def read(pipe: Any, lane: str, problem_class: str | None) -> None:
        """Queue the reads of ``figures`` on a pipeline: the class's hash and the lane's."""
        pipe.hgetall(telemetry_key(lane, problem_class or ALL_CLASSES))
        pipe.hgetall(telemetry_key(lane, ALL_CLASSES))
