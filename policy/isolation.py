"""Compile a policy in a child process first, so that what crashes the Rego engine crashes only the child.

regopy is C++: a deeply nested expression (``x := [[[[…]]]]`` some thousands deep) overflows its parser's
stack and the process dies with SIGSEGV, and other inputs have crashed it the same way. A policy change
read by the ingress would take the ingress down, and it would die again at every restart while the file
stays. So a bundle is compiled (and given one smoke decision) in a short-lived interpreter first; only
when that child exits cleanly is it compiled in this process. The child costs about 0.2 s per policy
change, and is bounded by ``timeout_s`` (a policy that takes longer to compile is refused): the reload
runs in the request that noticed the change, which waits for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 5.0  # the shipped policy compiles in 0.03 s; 110 KB of one rule redefined took 20 s


class IsolatedFailure(ValueError):
    """The child refused the policy, crashed on it or ran out of time; the message says which."""


def check_in_child(modules: Mapping[str, str], data: Mapping[str, Any], *, smoke: bool,
                   timeout_s: float = TIMEOUT_S) -> None:
    """Compile ``modules`` with ``data`` (and, with ``smoke``, make one decision) in a child interpreter."""
    timeout_s = timeout_s if 0 < timeout_s < 3600 else TIMEOUT_S  # NaN, 0 or negative: the default
    payload = json.dumps({"modules": dict(modules), "data": data, "smoke": smoke})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", "policy.isolation"], input=payload, capture_output=True,
                              text=True, timeout=timeout_s, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        raise IsolatedFailure(f"the policy took longer than {timeout_s:g} s to compile") from None
    except OSError as exc:  # no process could be started (EAGAIN, ENOMEM): not loaded, tried at the next change
        raise IsolatedFailure(f"cannot start the policy check: {exc.strerror or exc}") from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.Signals._value2member_map_ else "?"
        raise IsolatedFailure(f"the Rego engine crashed on this policy ({name}); nothing was loaded")
    try:
        reason = str(json.loads((done.stdout.strip().splitlines() or [""])[-1])["error"])  # regopy prints too
    except (ValueError, KeyError, TypeError):
        reason = f"the policy check failed: {(done.stderr.strip().splitlines() or ['no reason given'])[-1][:300]}"
    raise IsolatedFailure(reason)


def _child() -> int:
    from policy.engine import PolicyError, compile_checked

    request = json.loads(sys.stdin.read())
    try:
        compile_checked(request["modules"], request["data"], smoke=request["smoke"])
    except PolicyError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child())
