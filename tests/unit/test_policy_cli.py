"""`qgate policy check`: a good policy and its Rego tests pass (exit 0); a broken one or a failing test is exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from policy.engine import DEFAULT_DATA, DEFAULT_POLICY


def _check(policy: Path, data: Path) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "qgate_cli", "policy", "check", str(policy), "--data", str(data)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_good_policy_passes_its_tests() -> None:
    code, out = _check(DEFAULT_POLICY, DEFAULT_DATA)
    assert code == 0 and out["valid"] and out["tests"] >= 7 and out["failed"] == []


def test_broken_policy_and_failing_test_and_bad_data(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rego"
    broken.write_text("package qgate.policy\nimport rego.v1\ndecision := {\n")
    code, out = _check(broken, DEFAULT_DATA)
    assert code == 1 and not out["valid"] and "compile" in out["error"]

    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copy(DEFAULT_POLICY, folder / "qgate.rego")
    (folder / "extra_test.rego").write_text("package qgate.extra_test\nimport rego.v1\ntest_wrong if 1 == 2\n")
    code, out = _check(folder / "qgate.rego", DEFAULT_DATA)
    assert code == 1 and out["failed"] == ["qgate.extra_test.test_wrong"]

    bad_data = tmp_path / "data.json"
    bad_data.write_text("{not json")
    code, out = _check(DEFAULT_POLICY, bad_data)
    assert code == 1 and "not JSON" in out["error"]
