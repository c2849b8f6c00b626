"""Reading entries back out of the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from audit.entry import decode_line


def job_entries(path: Path, job_id: str) -> Iterator[dict[str, Any]]:
    """Every whole entry of ``job_id``, in log order (a linear scan; indexed lookups come with the
    Merkle-tree work)."""
    if not path.exists():
        return
    needle = f'"job_id":"{job_id}"'.encode()
    with path.open("rb") as handle:
        for line in handle:
            if needle in line and line.endswith(b"\n"):
                entry = decode_line(line)
                if entry.get("job_id") == job_id:
                    yield entry
