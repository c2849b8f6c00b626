"""Hostile policy files, both while a process serves and under ``qgate policy check``.

A policy or data file replaced by garbage, an empty file, an endless one (a device), a FIFO nobody writes,
a symlink loop, a directory, a deleted file, deeply nested Rego or JSON, Rego the engine compiles in
quadratic time (110 KB of one rule redefined: about 20 s; the request that noticed the change waited for
it), or numbers the Rego engine cannot
carry (``1e20``, ``1e-05``: regopy crashes with SIGSEGV when it prints a number written with an exponent
but no fraction, the way Python's json writes large and small floats): the process keeps the last good
policy, keeps deciding, and says why; the CLI prints ``{"valid": false, ...}`` and exits 1.

Each case runs in a child process, so that a crash of the Rego engine (it kills the whole process) or a
hang is this test's failure rather than the end of the test run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from policy.engine import DEFAULT_DATA, DEFAULT_POLICY

ROOT = Path(__file__).parents[2]

_SERVING = r"""
import json, resource, sys, time
from policy.source import PolicySource
source = PolicySource(sys.argv[1], sys.argv[2], poll_s=0)
good = source.current().sha256
print("loaded", flush=True)
if sys.argv[3] == "limit-memory":  # an endless read fails here after 512 MB, not on the host
    data_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmData:"))
    resource.setrlimit(resource.RLIMIT_DATA, ((data_kb << 10) + (512 << 20),) * 2)
sys.stdin.readline()  # the parent breaks the files now
started = time.monotonic()
bundle = source.current()
took = time.monotonic() - started
decision = source.decide({"tenant": "t", "scopes": [], "request": {"solver": "auto", "cost_tier": "standard",
                          "metadata": {}}, "lanes": {lane: {"cost_usd": 0.0, "provider": None, "region": "local"}
                          for lane in ("qpu", "sim", "heuristic")}, "config": {"standard_tier_max_usd": 0.0}})
print(json.dumps({"kept": bundle.sha256 == good, "error": source.last_error, "qpu": list(decision.access["qpu"]),
                  "took_s": took}))
"""


def _nested_rego(depth: int) -> str:
    return DEFAULT_POLICY.read_text() + f"\nnested := {'[' * depth}{']' * depth}\n"


def _write(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


BREAKAGES: dict[str, Callable[[Path, Path], None]] = {
    "policy-binary-garbage": lambda p, d: _write(p, bytes(range(256)) * 64),
    "policy-empty": lambda p, d: _write(p, ""),
    "policy-rego-nested-20000": lambda p, d: _write(p, _nested_rego(20_000)),
    "policy-deleted": lambda p, d: p.unlink(),
    "policy-symlink-loop": lambda p, d: _replace(p, lambda q: q.symlink_to(q)),
    "policy-directory": lambda p, d: _replace(p, lambda q: q.mkdir()),
    "policy-fifo": lambda p, d: _replace(p, os.mkfifo),
    "policy-huge-garbage": lambda p, d: _write(p, "x" * (24 << 20)),
    "policy-slow-to-compile": lambda p, d: _write(p, "package qgate.policy\n" + "a := 1\n" * 16_000),
    "data-empty": lambda p, d: _write(d, ""),
    "data-endless-device": lambda p, d: _replace(d, lambda q: q.symlink_to("/dev/zero")),
    "data-json-nested-5000": lambda p, d: _write(d, '{"qgate": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"),
    "data-nan": lambda p, d: _write(d, '{"qgate": {"x": NaN}}'),
}
EXPONENT_POLICY = ("package qgate.policy\nimport rego.v1\ndecision := {\"refusal\": null, \"access\": {}, "
                   "\"budget\": {}, \"limit\": data.qgate.limit}\n")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copy(DEFAULT_POLICY, tmp_path / "qgate.rego")
    shutil.copy(DEFAULT_DATA, tmp_path / "data.json")
    return tmp_path / "qgate.rego", tmp_path / "data.json"


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_serving_process_keeps_the_last_good_policy(files: tuple[Path, Path], breakage: str) -> None:
    policy, data = files
    limit = "limit-memory" if breakage == "data-endless-device" else "-"
    child = subprocess.Popen([sys.executable, "-c", _SERVING, str(policy), str(data), limit], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "loaded"
        BREAKAGES[breakage](policy, data)
        out, err = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, f"the serving process died ({child.returncode}): {err[-800:]}"
    verdict = json.loads(out.strip().splitlines()[-1])
    assert verdict["kept"] and verdict["error"] and not verdict["error"].startswith("MemoryError"), verdict
    assert verdict["qpu"], "the last good policy still decides"
    assert verdict["took_s"] < 8, f"the reload held the request that noticed it {verdict['took_s']:.1f} s"


def _check(policy: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qgate_cli", "policy", "check", str(policy), "--data", str(data)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("breakage", ["policy-binary-garbage", "policy-rego-nested-20000", "policy-fifo",
                                      "data-json-nested-5000", "data-nan"])
def test_policy_check_refuses_hostile_files_with_one_json_line(files: tuple[Path, Path], breakage: str) -> None:
    BREAKAGES[breakage](*files)
    done = _check(*files)
    assert done.returncode == 1, (done.returncode, done.stderr[-800:])
    assert "Traceback" not in done.stderr
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdict["valid"] is False and verdict["error"]


@pytest.mark.parametrize("number", ["1e20", "1e-05", "2E5", "-1e300"])
def test_numbers_with_an_exponent_reach_the_policy_intact(tmp_path: Path, number: str) -> None:
    """A data value the policy hands back (here ``limit``) comes out as the number it was, in a process
    that survives: the engine is given each float with a fraction (``1.0e+20``), which it can print."""
    (tmp_path / "p.rego").write_text(EXPONENT_POLICY)
    (tmp_path / "d.json").write_text('{"qgate": {"limit": %s}}' % number)
    done = subprocess.run([sys.executable, "-c", "import sys, json; from policy.engine import PolicyBundle; "
                           "b = PolicyBundle.load(sys.argv[1], sys.argv[2]); print(json.dumps(b.data))",
                           str(tmp_path / "p.rego"), str(tmp_path / "d.json")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert json.loads(done.stdout)["qgate"]["limit"] == float(number)


def test_no_process_to_compile_in_is_a_refused_policy_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """fork/exec failing (EAGAIN under a process limit) refuses the new policy with its reason."""
    import errno

    from policy import isolation
    from policy.engine import PolicyBundle, PolicyError

    def no_fork(*_: object, **__: object) -> None:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(isolation.subprocess, "run", no_fork)
    with pytest.raises(PolicyError, match="cannot start the policy check"):
        PolicyBundle.load(DEFAULT_POLICY, DEFAULT_DATA)
