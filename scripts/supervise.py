#!/usr/bin/env python3
"""Run every process of a Procfile (``name: command`` lines) in the foreground and keep each one up.

* Each process runs as ``bash -c COMMAND`` in its own session, so it and its children (Celery pool
  processes, gunicorn workers) form one process group, which is ended as a whole.
* A process that exits is restarted alone: whatever is left of its group is SIGKILLed, the others are
  left alone. Restarts back off: 1 s, doubling up to 30 s; back to 1 s once the process stayed up 60 s.
* SIGTERM, SIGINT or SIGHUP stop everything, the way systemd's KillMode=mixed does: SIGTERM to each
  main process (a Celery worker then stops its pool children itself, after their running tasks;
  SIGTERM straight to the pool children would kill those tasks), SIGTERM to what is left of a group
  once its main process is gone, SIGKILL to every group still there 20 s after the stop began; then
  exit 0.
* Output (stdout and stderr) goes to this stdout, each line prefixed with the time and the process's
  name, as honcho prints it. ``--status-file`` keeps a JSON record of every process's state and PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_CHILD_SUBREAPER = 36
TICK_S = 0.1
SYSTEM = "system"
COLORS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")


@dataclass(frozen=True)
class Policy:
    initial_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    stop_timeout: float = 20.0


def parse_procfile(text: str) -> dict[str, str]:
    """``name: command`` per line; blank lines and ``#`` comments are skipped (honcho's format)."""
    commands: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if not match:
            raise ValueError(f"line {number} is not 'name: command': {line!r}")
        if match.group(1) in commands:
            raise ValueError(f"line {number}: process {match.group(1)!r} is defined twice")
        commands[match.group(1)] = match.group(2).strip()
    if not commands:
        raise ValueError("no process defined")
    return commands


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def become_subreaper() -> None:
    """On Linux, orphaned descendants are re-parented to this process (and reaped by it) rather than
    to PID 1, which in a container may never reap them: a zombie would keep its group looking alive."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Printer:
    """Writes whole lines to stdout, ``HH:MM:SS name | text``, from any thread."""

    def __init__(self, names: list[str], stream: IO[bytes], color: bool) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._width = max(len(name) for name in [*names, SYSTEM])
        self._colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)} if color else {}

    def line(self, name: str, text: str) -> None:
        prefix = f"{time.strftime('%H:%M:%S')} {name:<{self._width}} | "
        color = self._colors.get(name)
        if color:
            prefix = f"\033[{color}m{prefix}\033[0m"
        data = (prefix + text + "\n").encode("utf-8", "replace")
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed terminal must not take the processes down

    def system(self, text: str) -> None:
        self.line(SYSTEM, text)

    def pump(self, name: str, pipe: IO[bytes]) -> threading.Thread:
        def copy() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    self.line(name, raw.rstrip(b"\r\n").decode("utf-8", "replace"))

        thread = threading.Thread(target=copy, name=f"output-{name}", daemon=True)
        thread.start()
        return thread


class Program:
    """One Procfile process: its current instance, its restart schedule and back-off."""

    def __init__(self, name: str, command: str, policy: Policy, printer: Printer, env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.policy = policy
        self.printer = printer
        self.env = env
        self.pid: int | None = None
        self.pgid: int | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.delay = policy.initial_delay
        self.restarts = 0
        self.last_exit = ""
        self.outputs: list[threading.Thread] = []

    def start(self, now: float) -> None:
        self.restart_at = None
        try:
            self.popen = subprocess.Popen(["bash", "-c", self.command], env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            delay = self._schedule_restart(now, now)
            self.printer.system(f"{self.name} could not start: {exc}; trying again in {delay:g} s")
            return
        self.pid = self.pgid = self.popen.pid
        self.started_at = now
        assert self.popen.stdout is not None
        self.outputs = [t for t in self.outputs if t.is_alive()] + [self.printer.pump(self.name, self.popen.stdout)]
        self.printer.system(f"{self.name} started (pid {self.pid})")

    def exited(self, status: int, now: float, stopping: bool) -> None:
        """Its main process ended (already reaped): end the rest of its group (SIGTERM when stopping,
        SIGKILL otherwise: nothing of the old instance may run beside the new one), plan the restart."""
        assert self.popen is not None and self.pgid is not None
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.last_exit = describe_exit(status)
        pid, self.pid, self.popen = self.pid, None, None
        if stopping:
            signal_group(self.pgid, signal.SIGTERM)
            self.printer.system(f"{self.name} (pid {pid}) {self.last_exit}")
            return
        signal_group(self.pgid, signal.SIGKILL)
        delay = self._schedule_restart(now, self.started_at)
        self.printer.system(f"{self.name} (pid {pid}) {self.last_exit} after {now - self.started_at:.1f} s; "
                            f"restarting it in {delay:g} s")

    def _schedule_restart(self, now: float, started_at: float) -> float:
        """Plan the next start; returns its delay (back-off, reset by a long enough run)."""
        if now - started_at >= self.policy.stable_after:
            self.delay = self.policy.initial_delay
        delay, self.restart_at = self.delay, now + self.delay
        self.delay = min(self.delay * 2, self.policy.max_delay)
        return delay

    def forget_empty_group(self) -> None:
        """Once a stopped instance's group is empty its number may be reused: never signal it again."""
        if self.pid is None and self.pgid is not None and not group_alive(self.pgid):
            self.pgid = None

    def restart_if_due(self, now: float) -> bool:
        if self.restart_at is None or now < self.restart_at:
            return False
        self.restarts += 1
        self.start(now)
        return True

    def group_alive(self) -> bool:
        return self.pgid is not None and group_alive(self.pgid)

    def signal(self, sig: int) -> None:
        if self.pgid is not None:
            signal_group(self.pgid, sig)

    def terminate(self) -> None:
        """SIGTERM to the main process alone; only leftovers of an instance that already ended (its
        main process is gone) get it as a group."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
        else:
            self.signal(signal.SIGTERM)

    def status(self) -> dict[str, Any]:
        state = "running" if self.pid else "backoff" if self.restart_at is not None else "stopped"
        return {"state": state, "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                "command": self.command}


class Supervisor:
    def __init__(self, programs: list[Program], policy: Policy, printer: Printer, status_file: Path | None) -> None:
        self.programs = programs
        self.policy = policy
        self.printer = printer
        self.status_file = status_file
        self.stop_signal: int | None = None

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop_signal)
        become_subreaper()
        now = time.monotonic()
        for program in self.programs:
            program.start(now)
        self.write_status()
        while self.stop_signal is None:
            changed = self.reap(stopping=False)
            for program in self.programs:
                program.forget_empty_group()
            now = time.monotonic()
            changed = any([program.restart_if_due(now) for program in self.programs]) or changed
            if changed:
                self.write_status()
            time.sleep(TICK_S)
        self.stop()
        return 0

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def reap(self, stopping: bool) -> bool:
        """Reap every ended child (orphaned descendants too, as subreaper); True if a program's main
        process was among them."""
        by_pid = {program.pid: program for program in self.programs if program.pid}
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            if pid in by_pid:
                by_pid.pop(pid).exited(status, time.monotonic(), stopping)
                reaped = True

    def stop(self) -> None:
        assert self.stop_signal is not None
        self.printer.system(f"{signal.Signals(self.stop_signal).name} received: stopping every process")
        for program in self.programs:
            program.restart_at = None
            program.terminate()
        self.write_status()
        if not self._wait_groups_gone(self.policy.stop_timeout):
            for program in self.programs:
                if program.group_alive():
                    self.printer.system(f"{program.name} still running after {self.policy.stop_timeout:g} s: SIGKILL")
                    program.signal(signal.SIGKILL)
            self._wait_groups_gone(5.0)
        for program in self.programs:
            for thread in program.outputs:
                thread.join(1.0)
        self.write_status()
        self.printer.system("every process stopped")

    def _wait_groups_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.reap(stopping=True)
            if not any(program.group_alive() for program in self.programs):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(TICK_S)

    def write_status(self) -> None:
        if self.status_file is None:
            return
        body = {"pid": os.getpid(), "stopping": self.stop_signal is not None,
                "processes": {program.name: program.status() for program in self.programs}}
        partial = self.status_file.with_name(self.status_file.name + ".tmp")
        partial.write_text(json.dumps(body, indent=1) + "\n")
        partial.replace(self.status_file)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--status-file", type=Path, help="JSON file kept up to date with each process's state and PID")
    parser.add_argument("--backoff-initial", type=float, default=Policy.initial_delay, metavar="S")
    parser.add_argument("--backoff-max", type=float, default=Policy.max_delay, metavar="S")
    parser.add_argument("--stable-after", type=float, default=Policy.stable_after, metavar="S",
                        help="uptime after which a process's back-off starts again from --backoff-initial")
    parser.add_argument("--stop-timeout", type=float, default=Policy.stop_timeout, metavar="S",
                        help="how long a stop waits after SIGTERM before SIGKILL")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        commands = parse_procfile(args.procfile.read_text())
    except (OSError, ValueError) as exc:
        print(f"supervise: {args.procfile}: {exc}", file=sys.stderr)
        return 2
    policy = Policy(args.backoff_initial, args.backoff_max, args.stable_after, args.stop_timeout)
    printer = Printer(list(commands), sys.stdout.buffer, sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}
    if args.status_file:
        args.status_file.parent.mkdir(parents=True, exist_ok=True)
    programs = [Program(name, command, policy, printer, env) for name, command in commands.items()]
    return Supervisor(programs, policy, printer, args.status_file).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
