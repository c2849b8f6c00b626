"""Key files created by several processes at once: every process gets the same key, none an error.

gunicorn starts its workers together, and the ingress, lane workers and audit writer start together
under the Procfile, so on a fresh var/ directory they race to create the same key files. The console
key used to be created in place (O_EXCL, then write): a process that lost the race could read it
before its bytes were there and fail to start.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
from pathlib import Path
from typing import Any, Callable

import pytest

from api.console_session import load_or_create_key as console_key
from api.keys import load_signing_key
from webhooks.vault import load_or_create_key as vault_key

PROCESSES = 6
ROUNDS = 8


def _jwt_key(path: Path) -> bytes:
    return load_signing_key(path).kid.encode()


LOADERS: dict[str, Callable[[Path], Any]] = {"console session key": console_key, "webhook vault key": vault_key,
                                             "JWT signing key": _jwt_key}


def _load(name: str, path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        results.put(LOADERS[name](Path(path)))
    except Exception as exc:  # the failure is the finding: report it to the parent
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_processes_creating_a_key_at_once_all_get_the_same_key(tmp_path: Path, name: str) -> None:
    context = mp.get_context("fork")
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "keys" / "key"
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_load, args=(name, str(path), barrier, results))
                     for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        got = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert all(not isinstance(value, str) for value in got), got
        assert len(set(got)) == 1, f"round {round_}: the processes got different keys"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert not [p for p in os.listdir(path.parent) if p != "key"], "a temporary file was left behind"


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "keys" / "key"
    LOADERS[name](path)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        LOADERS[name](path)
