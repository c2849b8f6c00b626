"""Chaos drills under a steady load, against a whole stack of real processes (attack suite (e)).

Each drill runs a load of small async jobs (tsp and assignment on the heuristic lane, circuits on qpu and
sim, assignment under ``auto``), injects one fault mid-load, keeps the load going after it, replaces
what it killed the way a supervisor would, then waits for every accepted job to end and for the audit
writer to drain its stream, and counts:

- accepted   202/200 answers (a 503, 429, 5xx or connection error during the fault is *refused*)
- ended      accepted jobs in a terminal status
- stuck      accepted jobs (and jobs created behind a refused answer) still not terminal after their
             budget + lease grace + ``--margin`` seconds
- late       jobs that ended more than 2 s past budget + lease grace (informational: while Redis is away
             no process can end anything)
- duplicated jobs with more than one ``job.accepted``, more than one end entry, or the same attempt
             event twice, plus log entries that share an ``event_id``
- missing    per ended job, the job record's ``audit_events`` minus its entries in the log (``extra`` is
             the opposite; a ``calibration.recorded`` entry may or may not be among ``audit_events``,
             depending on whether it was written in the job's transition or beside it: both match)
- exited     processes of the stack that are not alive at the end, except the one killed on purpose
- verify     whether ``qgate audit verify`` passes

Redis ``kill -9``: Redis writes its AOF (``appendfsync everysec``) to the kernel before it answers, so
killing the *process* loses no acknowledged write (only a host crash loses the last second). An
accepted job whose record is gone after the restart is counted as ``lost`` (Redis's own data loss, not
qgate's) and listed apart from ``stuck``; it does not fail the run, everything else is counted the same.

    python -m bench.chaos                         short drills (a few jobs/s for 15 s each)
    python -m bench.chaos --seconds 120 --rate 20 what ``make chaos`` runs with CHAOS_ARGS
    python -m bench.chaos --drill redis_pause     one drill (repeatable)

Exits 1 when any drill has stuck, duplicated or missing > 0, a process exited, or the log does not verify.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import redis
import requests

from tests.integration import problems
from tests.integration.stack import Stack, wait_for
from solvers.circuits import GHZ3

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
END_TYPES = frozenset({"job.succeeded", "job.failed", "job.cancelled"})
ATTEMPT_TYPES = frozenset({"attempt.enqueued", "attempt.started", "attempt.succeeded", "attempt.failed",
                           "attempt.timeout", "attempt.cancelled"})
# emitted beside a job's transition (older code) or inside it (counted in audit_events): either matches
NOT_COUNTED = frozenset({"calibration.recorded"})
STREAM = "qgate:audit:events"
GROUP = "audit-writer"
TENANT = "chaos"
SCOPES = "quantum:solve solver:qpu solver:sim solver:heuristic audit:read"
LEASE_GRACE_MS = 1500  # Stack's QGATE_LEASE_GRACE_MS
LATE_TOLERANCE_S = 2.0  # the watchdog sweeps every 0.25 s; a loaded 2-core host adds the rest
DRILLS = ("redis_restart", "redis_pause", "redis_kill9", "lane_worker_kill9", "audit_pause_with_standby",
          "watchdog_kill")
STACK_ENV = {"QGATE_RATE_LIMITS": "off", "QGATE_MAX_ACTIVE_JOBS": "100000"}


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# the load ----------------------------------------------------------------------------------------------
@dataclass
class Submission:
    job_id: str
    budget_ms: int
    sent_at: float
    status: int


def job_request(rng: random.Random, i: int) -> tuple[dict[str, Any], int]:
    """One small async job: its body and budget (3-8 s, above the sync threshold, so a 202)."""
    budget_ms = rng.randint(3000, 8000)
    pick = rng.random()
    if pick < 0.4:
        body = {"problem": problems.tsp(8, seed=i), "solver": "heuristic", "seed": i}
    elif pick < 0.6:
        body = {"problem": problems.circuit(shots=200), "solver": "qpu", "seed": i}
    elif pick < 0.8:
        body = {"problem": problems.circuit(GHZ3, shots=200), "solver": "sim", "seed": i}
    elif pick < 0.9:
        body = {"problem": problems.assignment(), "solver": "heuristic"}
    else:
        body = {"problem": problems.assignment()}  # auto: sim's QAOA, then the heuristic lane
    return body, budget_ms


class Load:
    """``rate`` POSTs a second from a ticker thread, each on a pool thread, at most ``max_in_flight`` at
    once (beyond that a tick is shed, not queued: a POST hanging on a paused Redis must not pile up)."""

    def __init__(self, stack: Stack, token: str, rate: float, seed: int, max_in_flight: int = 48) -> None:
        self.stack, self.token, self.rate = stack, token, rate
        self.rng = random.Random(seed)
        self.accepted: list[Submission] = []
        self.refused: Counter[str] = Counter()
        self.shed = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="chaos-load")
        self._stop = threading.Event()
        self._local = threading.local()
        self._ticker = threading.Thread(target=self._tick, name="chaos-ticker", daemon=True)
        self._n = 0

    def start(self) -> "Load":
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join()
        self._pool.shutdown(wait=True)

    def _tick(self) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic()
        while not self._stop.is_set():
            due += interval
            if self._slots.acquire(blocking=False):
                self._n += 1
                body, budget_ms = job_request(self.rng, self._n)
                self._pool.submit(self._post, body, budget_ms)
            else:
                with self._lock:
                    self.shed += 1
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _post(self, body: dict[str, Any], budget_ms: int) -> None:
        sent = time.time()
        try:
            reply = self._session().post(self.stack.url + "/api/v1/quantum/solve", json=body,
                                         headers=self.stack.headers(self.token, budget_ms), timeout=(5, 45))
            if reply.status_code in (200, 202):
                with self._lock:
                    self.accepted.append(Submission(reply.json()["job_id"], budget_ms, sent, reply.status_code))
            else:
                with self._lock:
                    self.refused[str(reply.status_code)] += 1
        except requests.RequestException as exc:
            with self._lock:
                self.refused[type(exc).__name__] += 1
        finally:
            self._slots.release()


# the faults --------------------------------------------------------------------------------------------
@dataclass
class Drill:
    name: str
    inject: Callable[[Stack], None]
    killed: frozenset[str] = frozenset()  # processes ended on purpose (and replaced)
    setup: Callable[[Stack], None] = lambda stack: None
    teardown: Callable[[Stack, "DrillResult"], None] = lambda stack, result: None


def _restart(stack: Stack) -> None:
    stack.restart_redis(2.0)


def _pause(stack: Stack) -> None:
    stack.pause_redis(15.0)


def _kill9_redis(stack: Stack) -> None:
    stack.kill_redis()


def _kill9_lane(stack: Stack) -> None:
    stack.kill_worker("heuristic")
    time.sleep(1.0)  # a supervisor's restart delay
    stack.start_worker("heuristic")


def _standby_up(stack: Stack) -> None:
    standby = stack.start_standby_audit()
    wait_for(lambda: "audit_writer_waiting_for_lock" in standby.log_path.read_text(errors="replace"), 60,
             "the standby audit writer to wait for the lock")


def _pause_audit(stack: Stack) -> None:
    assert stack.audit is not None
    stack.pause_process(stack.audit, 14.0)  # past the writer's 10 s Redis lock


def _standby_down(stack: Stack, result: "DrillResult") -> None:
    """Note whether the standby took over, then stop it (SIGTERM): it must leave cleanly."""
    standby = getattr(stack, "audit_standby", None)
    if standby is None:
        return
    result.details["standby_took_over"] = '"audit_writer_started"' in standby.log_path.read_text(errors="replace")
    if not standby.alive():
        result.exited.append(f"audit-standby (rc {standby.popen.returncode})")
    standby.stop()
    if standby.popen.returncode != 0:
        result.exited.append(f"audit-standby (rc {standby.popen.returncode} on SIGTERM)")
    stack.audit_standby = None


def _kill_watchdog(stack: Stack) -> None:
    stack.kill_watchdog()
    time.sleep(8.0)  # leases run out meanwhile; the lane workers still end their own attempts
    stack.start_watchdog()


DRILL_SPECS: dict[str, Drill] = {
    "redis_restart": Drill("redis_restart", _restart, frozenset({"redis"})),
    "redis_pause": Drill("redis_pause", _pause),
    "redis_kill9": Drill("redis_kill9", _kill9_redis, frozenset({"redis"})),
    "lane_worker_kill9": Drill("lane_worker_kill9", _kill9_lane, frozenset({"worker-heuristic"})),
    "audit_pause_with_standby": Drill("audit_pause_with_standby", _pause_audit, setup=_standby_up,
                                      teardown=_standby_down),
    "watchdog_kill": Drill("watchdog_kill", _kill_watchdog, frozenset({"watchdog"})),
}


# the counting ------------------------------------------------------------------------------------------
@dataclass
class DrillResult:
    drill: str
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    shed: int = 0
    ended: int = 0
    stuck: int = 0
    lost: int = 0
    late: int = 0
    max_overrun_s: float = float("-inf")
    duplicated: int = 0
    missing: int = 0
    extra: int = 0
    orphans: int = 0
    exited: list[str] = field(default_factory=list)
    verify_ok: bool = False
    verify_output: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def violations(self) -> list[str]:
        """What breaks the drill's invariants (``late`` and ``lost`` are reported, not judged)."""
        out = []
        for name in ("stuck", "duplicated", "missing", "extra"):
            if getattr(self, name):
                out.append(f"{name}={getattr(self, name)}: {self.details.get(name)}")
        if self.exited:
            out.append(f"exited: {self.exited} {self.details.get('exited')}")
        if not self.verify_ok:
            out.append(f"audit verify failed: {self.verify_output}")
        if not self.accepted:
            out.append("no job was accepted: the drill proved nothing")
        return out

    def row(self) -> dict[str, Any]:
        return {"drill": self.drill, "accepted": self.accepted, "refused": sum(self.refused.values()),
                "ended": self.ended, "stuck": self.stuck, "lost": self.lost, "late": self.late,
                "duplicated": self.duplicated, "missing": self.missing, "extra": self.extra,
                "orphans": self.orphans, "exited": ",".join(self.exited) or "-",
                "verify": "ok" if self.verify_ok else "FAIL"}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _alive(proc: Any) -> bool:
    return proc.alive() if hasattr(proc, "alive") else proc.poll() is None


def _exit_code(proc: Any) -> Any:
    return proc.popen.returncode if hasattr(proc, "popen") else proc.returncode


def _records(stack: Stack, job_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """The job records as Redis holds them now (None: no record)."""
    client = stack.redis()
    out: dict[str, dict[str, Any] | None] = {}
    for i in range(0, len(job_ids), 500):
        chunk = job_ids[i:i + 500]
        for job_id, raw in zip(chunk, client.mget([f"qgate:job:{j}" for j in chunk])):
            out[job_id] = json.loads(raw) if raw else None
    return out


class ChaosRunner:
    """Runs drills one after another on one stack, leaving it whole (what a drill kills is restarted)."""

    def __init__(self, stack: Stack, client: dict[str, Any] | None = None, margin_s: float = 30.0) -> None:
        self.stack = stack
        self.client = client or stack.create_client(TENANT, SCOPES)
        self.margin_s = margin_s
        self._seed = 0

    # waiting ---------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 120) -> None:
        """Every lane beating and Redis answering, as /readyz says."""
        def ready() -> bool:
            try:
                return requests.get(self.stack.url + "/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        wait_for(ready, timeout, "/readyz", interval=0.5)

    def _wait_ended(self, deadlines: dict[str, float]) -> dict[str, dict[str, Any] | None]:
        """Poll until every job is terminal or past its deadline; return the last records read."""
        records: dict[str, dict[str, Any] | None] = {}
        open_ids = list(deadlines)
        while open_ids:
            try:
                records.update(_records(self.stack, open_ids))
            except redis.RedisError:
                time.sleep(1.0)
                continue
            now = time.time()
            open_ids = [j for j in open_ids if (records.get(j) or {}).get("status") not in TERMINAL
                        and now < deadlines[j]]
            if open_ids:
                time.sleep(0.5)
        return records

    def _wait_audit_drained(self, timeout: float) -> bool:
        """The audit stream empty: every event written to the log (the writer deletes after fsync)."""
        def drained() -> bool:
            try:
                client = self.stack.redis()
                return client.xlen(STREAM) == 0
            except redis.RedisError:
                return False
        try:
            wait_for(drained, timeout, "the audit stream to drain", interval=0.5)
            return True
        except TimeoutError:
            return False

    # one drill --------------------------------------------------------------------------------------
    def run(self, name: str, seconds: float = 15.0, rate: float = 4.0) -> DrillResult:
        spec = DRILL_SPECS[name]
        result = DrillResult(name)
        began = time.monotonic()
        self.wait_ready()
        token = self.stack.token(self.client)  # a fresh token per drill: long runs outlive one
        before = self.stack.processes()  # what the drill starts itself (a standby) its teardown checks
        spec.setup(self.stack)
        start_seq = len(self.stack.audit_entries())
        self._seed += 1
        load = Load(self.stack, token, rate, seed=self._seed).start()
        fault_at = max(2.0, seconds * 0.3)
        time.sleep(fault_at)
        log(f"{name}: injecting after {fault_at:.0f} s of load")
        injected = time.monotonic()
        try:
            spec.inject(self.stack)
        finally:
            fault_s = time.monotonic() - injected
            log(f"{name}: fault over after {fault_s:.1f} s; load goes on")
            time.sleep(max(seconds - fault_at, fault_at, 3.0))
            load.stop()
        result.accepted, result.refused, result.shed = len(load.accepted), dict(load.refused), load.shed
        log(f"{name}: load stopped: {result.accepted} accepted, refused {result.refused}, shed {result.shed}")

        grace_s = LEASE_GRACE_MS / 1000
        deadlines = {s.job_id: s.sent_at + s.budget_ms / 1000 + grace_s + self.margin_s for s in load.accepted}
        records = self._wait_ended(deadlines)
        drained = self._wait_audit_drained(60 + self.margin_s)
        entries = [e for e in self.stack.audit_entries() if e["seq"] >= start_seq]

        # jobs created behind an answer the client never got (a 5xx or a timeout after the write)
        known = set(deadlines)
        orphans = {e["job_id"]: e for e in entries if e["type"] == "job.accepted" and e.get("tenant") == TENANT
                   and e["job_id"] not in known}
        if orphans:
            orphan_deadlines = {j: e["ts"] + e["data"]["budget_ms"] / 1000 + grace_s + self.margin_s
                                for j, e in orphans.items()}
            records.update(self._wait_ended(orphan_deadlines))
            drained = self._wait_audit_drained(60) and drained
            entries = [e for e in self.stack.audit_entries() if e["seq"] >= start_seq]
        result.orphans = len(orphans)
        self._count(result, load.accepted, set(orphans), records, entries, drained)

        spec.teardown(self.stack, result)
        exited = {n: _exit_code(p) for n, p in before.items() if n not in spec.killed and not _alive(p)}
        exited.update({n: _exit_code(p) for n, p in self.stack.processes().items() if not _alive(p)})
        result.exited += sorted(exited)
        if exited:
            result.details["exited"] = {n: {"rc": rc, "tail": self._tail(n)} for n, rc in exited.items()}

        done = self.stack.cli("audit", "verify")
        result.verify_ok = done.returncode == 0
        result.verify_output = (done.stdout.strip() + " " + done.stderr.strip()).strip()[-600:]
        result.seconds = round(time.monotonic() - began, 1)
        log(f"{name}: {json.dumps(result.row())}")
        return result

    def _tail(self, name: str) -> str:
        path = self.stack.logs / f"{name}.log"
        if not path.exists():
            candidates = sorted(self.stack.logs.glob(f"{name}*.log"))
            path = candidates[-1] if candidates else path
        return "\n".join(path.read_text(errors="replace").splitlines()[-15:]) if path.exists() else ""

    def _count(self, result: DrillResult, accepted: list[Submission], orphans: set[str],
               records: dict[str, dict[str, Any] | None], entries: list[dict[str, Any]], drained: bool) -> None:
        by_job: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            if entry.get("job_id"):
                by_job.setdefault(entry["job_id"], []).append(entry)
        budgets = {s.job_id: s.budget_ms for s in accepted}
        stuck, lost, late, missing, extra = [], [], [], {}, {}
        statuses: Counter[str] = Counter()
        for job_id in [s.job_id for s in accepted] + sorted(orphans):
            record = records.get(job_id)
            if record is None:
                lost.append(job_id)
                continue
            if record["status"] not in TERMINAL:
                stuck.append({"job_id": job_id, "status": record["status"], "current": record.get("current"),
                              "attempts": [(a["lane"], a["outcome"]) for a in record["attempts"]]})
                continue
            if job_id in budgets:
                result.ended += 1
            statuses[record["status"]] += 1
            took = _ts(record["finished_at"]) - _ts(record["created_at"])
            overrun = took - (record["latency_budget_ms"] + LEASE_GRACE_MS) / 1000
            result.max_overrun_s = max(result.max_overrun_s, round(overrun, 2))
            if overrun > LATE_TOLERANCE_S:
                late.append(job_id)
            in_log = [e["type"] for e in by_job.get(job_id, [])]
            counted = [t for t in in_log if t not in NOT_COUNTED]
            expected = record.get("audit_events", 0)
            if expected in (len(in_log), len(counted)):
                continue
            if len(in_log) < expected:
                missing[job_id] = {"expected": expected, "in_log": in_log}
            else:
                extra[job_id] = {"expected": expected, "in_log": in_log}
        result.stuck, result.lost, result.late = len(stuck), len(lost), len(late)
        result.missing = sum(v["expected"] - len(v["in_log"]) for v in missing.values())
        result.extra = sum(len(v["in_log"]) - v["expected"] for v in extra.values())

        duplicated: dict[str, list[str]] = {}
        for job_id, items in by_job.items():
            types = Counter(e["type"] for e in items)
            why = []
            if types["job.accepted"] > 1:
                why.append(f"job.accepted x{types['job.accepted']}")
            ends = sum(types[t] for t in END_TYPES)
            if ends > 1:
                why.append(f"{ends} end entries")
            attempts = Counter((e["type"], (e.get("data") or {}).get("attempt")) for e in items
                               if e["type"] in ATTEMPT_TYPES)
            why += [f"{t} #{n} x{c}" for (t, n), c in attempts.items() if c > 1]
            if why:
                duplicated[job_id] = why
        same_event = {eid: c for eid, c in Counter(e["event_id"] for e in entries).items() if c > 1}
        result.duplicated = len(duplicated) + len(same_event)
        result.details.update({
            "stuck": stuck[:10], "lost": lost[:10], "late": late[:10], "missing": dict(list(missing.items())[:5]),
            "extra": dict(list(extra.items())[:5]), "duplicated": dict(list(duplicated.items())[:5]),
            "same_event_id": dict(list(same_event.items())[:5]), "audit_drained": drained,
            "orphans": sorted(orphans)[:10], "statuses": dict(statuses),
        })
        if not drained:
            result.details["missing_note"] = "the audit stream did not drain: some events were still unwritten"


# the command -------------------------------------------------------------------------------------------
COLUMNS = ("drill", "accepted", "refused", "ended", "stuck", "lost", "late", "duplicated", "missing", "extra",
           "orphans", "exited", "verify")


def table(results: list[DrillResult]) -> str:
    rows = [{k: str(v) for k, v in r.row().items()} for r in results]
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in COLUMNS) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of load per drill (default 15)")
    parser.add_argument("--rate", type=float, default=4.0, help="jobs submitted per second (default 4)")
    parser.add_argument("--margin", type=float, default=30.0,
                        help="seconds past budget + lease grace before a job counts as stuck (default 30)")
    parser.add_argument("--drill", action="append", choices=DRILLS, help="run only these drills (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs, log, Redis data)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="qgate-chaos-"))
    log(f"stack under {base}")
    stack = Stack(base, **STACK_ENV)
    results: list[DrillResult] = []
    try:
        stack.start()
        runner = ChaosRunner(stack, margin_s=args.margin)
        for name in args.drill or DRILLS:
            results.append(runner.run(name, args.seconds, args.rate))
    finally:
        standby = getattr(stack, "audit_standby", None)
        if standby is not None:
            standby.stop()
        stack.stop()
    print(table(results))
    failed = [r for r in results if r.violations()]
    for r in results:
        extra = {k: v for k, v in r.details.items() if v and k not in ("audit_drained",)}
        print(f"\n{r.drill}: refused {r.refused}, shed {r.shed}, max overrun {r.max_overrun_s} s, "
              f"{r.seconds} s" + (f"\n  {json.dumps(extra, default=str)[:3000]}" if extra else ""))
        for violation in r.violations():
            print(f"  VIOLATION {violation[:2000]}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    print(f"\nlogs: {stack.logs}" if args.keep or failed else "")
    if not args.keep and not failed:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
