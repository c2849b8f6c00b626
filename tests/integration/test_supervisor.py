"""scripts/supervise.py, the supervisor of `make run`, with real processes: a crashed process is restarted
alone with back-off, the others keep running, and SIGTERM stops every process group and exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.integration.stack import ROOT, Stack, wait_for

SUPERVISE = ROOT / "scripts" / "supervise.py"
PY = sys.executable

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process state from /proc")

# A long-running process printing a line every 0.2 s. --child: it has a child process (in its group).
# --graceful: like a Celery worker's main process, on SIGTERM it stops its child itself (SIGUSR1) and
# waits for it. --ignore-term: SIGTERM is ignored.
TICKER = """
import signal, subprocess, sys, time
name = sys.argv[1]
child = subprocess.Popen([sys.executable, "child.py"]) if "--child" in sys.argv else None

def graceful(signum, frame):
    child.send_signal(signal.SIGUSR1)
    child.wait()
    print(name, "stopped gracefully", flush=True)
    sys.exit(0)

if "--graceful" in sys.argv:
    signal.signal(signal.SIGTERM, graceful)
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    print(name, "tick", flush=True)
    time.sleep(0.2)
"""

# The child says which signal ended it.
CHILD = """
import signal, sys, time

def stop(signum, frame):
    print("child stopped by", signal.Signals(signum).name, flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
while True:
    time.sleep(0.2)
"""


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def running(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.add(int(entry.name))
    return members


class Supervised:
    """scripts/supervise.py on a Procfile, its output collected line by line with arrival times."""

    def __init__(self, procfile: Path, status_path: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.status_path = status_path
        self.lines: list[tuple[float, str]] = []
        self.seen_groups: set[int] = set()
        self.popen = subprocess.Popen(
            [PY, str(SUPERVISE), "-f", str(procfile), "--status-file", str(self.status_path), *args],
            cwd=procfile.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def output(self, since: float = 0.0) -> list[str]:
        return [line for at, line in list(self.lines) if at >= since]

    def status(self) -> dict[str, Any]:
        assert self.popen.poll() is None, "\n".join(self.output()[-40:])
        if not self.status_path.exists():
            return {}
        processes = json.loads(self.status_path.read_text())["processes"]
        self.seen_groups.update(p["pid"] for p in processes.values() if p["pid"])
        return processes

    def pid(self, name: str) -> int | None:
        pid = self.status().get(name, {}).get("pid")
        return pid if pid and running(pid) else None

    def wait_pid(self, name: str, timeout: float, other_than: int | None = None) -> int:
        return wait_for(lambda: (pid := self.pid(name)) and pid != other_than and pid, timeout,
                        f"{name} running" + (f" with a new pid (was {other_than})" if other_than else ""))

    def wait_line(self, pattern: str, timeout: float, since: float = 0.0) -> str:
        regex = re.compile(pattern)
        return wait_for(lambda: next((line for line in self.output(since) if regex.search(line)), None), timeout,
                        f"an output line matching {pattern!r}", interval=0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.status()
        self.popen.send_signal(sig)
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    def cleanup(self) -> None:
        """Whatever a failed test left: SIGKILL every group the supervisor ever reported, and itself."""
        for pgid in self.seen_groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Any]:
    started: list[Supervised] = []

    def start(procfile: dict[str, str], *args: str) -> Supervised:
        path = tmp_path / "Procfile"
        path.write_text("".join(f"{name}: {command}\n" for name, command in procfile.items()))
        started.append(Supervised(path, tmp_path / "status.json", args=args))
        return started[-1]

    (tmp_path / "ticker.py").write_text(TICKER)
    (tmp_path / "child.py").write_text(CHILD)
    yield start
    for supervised in started:
        supervised.cleanup()


def ticker(name: str, *flags: str) -> str:
    return " ".join([PY, "ticker.py", name, *flags])


def test_a_killed_group_is_restarted_alone(supervise: Any) -> None:
    sup = supervise({"alpha": ticker("alpha", "--child"), "beta": ticker("${BETA_NAME:-beta}"),
                     "gamma": ticker("gamma")})
    pids = {name: sup.wait_pid(name, 20) for name in ("alpha", "beta", "gamma")}
    for name in pids:
        sup.wait_line(rf"^\d\d:\d\d:\d\d {name} +\| {name} tick$", 10)
    old_group = wait_for(lambda: len(members := group_members(pids["alpha"])) == 2 and members, 10,
                         "alpha and its child")

    killed_at = time.monotonic()
    os.killpg(pids["alpha"], signal.SIGKILL)
    new_alpha = sup.wait_pid("alpha", 5, other_than=pids["alpha"])
    latency = time.monotonic() - killed_at
    print(f"alpha restarted {latency:.2f} s after kill -9 of its group")

    assert not any(running(pid) for pid in old_group)
    wait_for(lambda: len(group_members(new_alpha)) == 2, 10, "the new alpha's child")
    sup.wait_line(r"alpha \(pid \d+\) was killed by SIGKILL after .* restarting it in 1 s", 1)
    sup.wait_line(r"alpha +\| alpha tick$", 5, since=killed_at + latency)
    for name in ("beta", "gamma"):
        assert sup.pid(name) == pids[name]
        sup.wait_line(rf"{name} +\| {name} tick$", 5, since=killed_at + latency)
    assert sup.status()["alpha"]["restarts"] == 1
    assert sup.stop() == 0


def test_a_crash_loop_backs_off_and_leaves_the_others_alone(supervise: Any) -> None:
    sup = supervise({"alpha": ticker("alpha"), "beta": ticker("beta"),
                     "crash": f"{PY} -c 'import sys; sys.exit(1)'",
                     "flaky": f"{PY} -c 'import sys, time; time.sleep(0.8); sys.exit(3)'"},
                    "--backoff-initial", "0.25", "--backoff-max", "1", "--stable-after", "0.6")
    pids = {name: sup.wait_pid(name, 20) for name in ("alpha", "beta")}
    wait_for(lambda: sup.status()["crash"]["restarts"] >= 5, 20, "5 restarts of crash")

    delays = [float(d) for d in re.findall(r"crash \(pid \d+\) exited with code 1 after [\d.]+ s; "
                                           r"restarting it in ([\d.]+) s", "\n".join(sup.output()))]
    assert delays[:5] == [0.25, 0.5, 1, 1, 1]
    starts = [at for at, line in sup.lines if re.search(r"system +\| crash started", line)]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(gap >= delay for gap, delay in zip(gaps, delays)), (gaps, delays)

    flaky = re.findall(r"flaky \(pid \d+\) exited with code 3 after [\d.]+ s; restarting it in ([\d.]+) s",
                       "\n".join(sup.output()))
    assert len(flaky) >= 2 and set(flaky) == {"0.25"}, "a run longer than --stable-after resets the back-off"
    assert {name: sup.pid(name) for name in pids} == pids
    assert sup.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_every_group_and_exits_0(supervise: Any, sig: int) -> None:
    sup = supervise({"alpha": ticker("alpha", "--child"), "beta": ticker("beta", "--child", "--graceful"),
                     "stubborn": ticker("stubborn", "--ignore-term", "--child"),
                     "crash": f"{PY} -c 'import sys; sys.exit(1)'"},
                    "--stop-timeout", "3")
    pids = {name: sup.wait_pid(name, 20) for name in ("alpha", "beta", "stubborn")}
    members = wait_for(lambda: all(len(group_members(pid)) == 2 for pid in pids.values())
                       and set().union(*(group_members(pid) for pid in pids.values())), 10, "every child")

    stopped_at = time.monotonic()
    assert sup.stop(sig) == 0
    took = time.monotonic() - stopped_at

    assert not [pid for pid in members if running(pid)]
    assert 3 <= took < 10, f"stubborn is SIGKILLed after --stop-timeout, the stop took {took:.1f} s"
    output = "\n".join(sup.output(stopped_at))
    assert f"{signal.Signals(sig).name} received: stopping every process" in output
    assert "stubborn still running after 3 s: SIGKILL" in output
    assert re.search(r"beta +\| beta stopped gracefully", output), "only the main process gets SIGTERM"
    assert re.search(r"beta +\| child stopped by SIGUSR1", output)
    assert re.search(r"beta \(pid \d+\) exited with code 0", output)
    assert re.search(r"alpha +\| child stopped by SIGTERM", output), "what outlives its main process gets SIGTERM"
    assert "every process stopped" in output
    assert "crash started" not in output, "nothing is restarted once stopping"


def test_the_real_procfile_survives_kill_9_of_a_worker_and_the_watchdog(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.start_redis()
    env = {**stack.env, "PORT": str(stack.http_port)}
    sup = Supervised(ROOT / "Procfile", tmp_path / "status.json", env=env)
    try:
        _check_the_real_stack(stack, sup)
    finally:
        sup.cleanup()
        stack.stop_redis()


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _check_the_real_stack(stack: Stack, sup: Supervised) -> None:
    names = ("web", "qpu", "sim", "heuristic", "webhooks", "audit", "watchdog")
    wait_for(lambda: _healthy(stack.url), 60, "GET /healthz")
    for lane in ("qpu", "sim", "heuristic", "webhooks"):
        sup.wait_line(rf"{lane} +\|.*ready", 60)
    pids = {name: sup.wait_pid(name, 10) for name in names}

    killed_at = time.monotonic()
    for name in ("heuristic", "watchdog"):
        os.killpg(pids[name], signal.SIGKILL)
    new_watchdog = sup.wait_pid("watchdog", 10, other_than=pids["watchdog"])
    new_heuristic = sup.wait_pid("heuristic", 10, other_than=pids["heuristic"])
    print(f"watchdog and heuristic restarted {time.monotonic() - killed_at:.2f} s after kill -9")
    sup.wait_line(r"heuristic +\|.*ready", 60, since=killed_at)
    print(f"heuristic ready again {time.monotonic() - killed_at:.1f} s after kill -9")

    assert _healthy(stack.url)
    assert {name: sup.pid(name) for name in names} == {**pids, "watchdog": new_watchdog, "heuristic": new_heuristic}
    members = set().union(*(group_members(pid) for pid in sup.seen_groups))
    stopped_at = time.monotonic()
    assert sup.stop(timeout=40) == 0
    print(f"stack stopped {time.monotonic() - stopped_at:.1f} s after SIGTERM")
    assert not [pid for pid in members if running(pid)]
    assert not _healthy(stack.url)
    output = "\n".join(sup.output(stopped_at))
    for name in names:  # a warm shutdown: Celery's pool children were stopped by their worker, not by us
        assert re.search(rf"{name} \(pid \d+\) exited with code 0", output), output[-3000:]
