"""Reading a request body as JSON that every later stage can carry.

The job's request and problem end up in Redis, in a Celery message and in the audit log, whose lines
are RFC 8785 canonical JSON. RFC 8785 (like I-JSON, RFC 7493) holds only finite IEEE-754 doubles,
integers within ±(2**53 - 1) and Unicode text; Python's ``json`` module accepts ``NaN``, ``Infinity``,
``1e400`` (as inf), integers of any size and lone surrogates (``"\\ud800"``). Each of those, let in at
the door, later stops a stage that cannot encode it. So the door refuses them, naming where they are.
"""

from __future__ import annotations

import json
import math
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator

SAFE_INTEGER = 2**53 - 1
_MAX_INT_DIGITS = len(str(SAFE_INTEGER))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


HEAVY_BODY_BYTES = 256 * 1024
HEAVY_SLOTS = 2
HEAVY_WAIT_S = 5.0
_heavy = threading.BoundedSemaphore(HEAVY_SLOTS)


class Busy(Exception):
    """Every slot for a large body is taken; the caller should retry shortly."""


@contextmanager
def heavy_body_slot(content_length: int | None) -> Iterator[None]:
    """Bound what large bodies cost one ingress process.

    Parsing and validating a body costs about 20 times its size in memory (a 12 MB distance matrix
    peaked at 233 MB) and seconds of CPU, so a process takes at most HEAVY_SLOTS bodies above
    HEAVY_BODY_BYTES (or of unknown length: chunked) at a time; the rest wait a little, then get Busy.
    """
    if content_length is not None and content_length <= HEAVY_BODY_BYTES:
        yield
        return
    if not _heavy.acquire(timeout=HEAVY_WAIT_S):
        raise Busy()
    try:
        yield
    finally:
        _heavy.release()


class BodyError(ValueError):
    """The body cannot be taken. ``status`` is 400 (not JSON at all) or 422 (JSON we cannot carry)."""

    def __init__(self, status: int, message: str, loc: list[str | int] | None = None, msg: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.loc, self.msg = status, message, loc or ["body"], msg or message

    def as_error(self) -> dict[str, Any]:
        return {"loc": self.loc, "msg": self.msg}


class _Unrepresentable(Exception):
    """Raised by the parse hooks; caught and turned into a BodyError with the value's location."""


class _Bad:
    """A placeholder for a value the strict parse refused, so that a second pass can find where it is."""

    def __init__(self, why: str) -> None:
        self.why = why


def _strict_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_INT_DIGITS or abs(int(text)) > SAFE_INTEGER:
        raise _Unrepresentable
    return int(text)


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unrepresentable
    return value


def _refuse_constant(_: str) -> Any:
    raise _Unrepresentable


def _int_or_bad(text: str) -> Any:
    try:
        return _strict_int(text)
    except _Unrepresentable:
        return _Bad(f"integer beyond ±{SAFE_INTEGER} (2**53 - 1): send it as a string or a float")


def _float_or_bad(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Bad("number too large for a 64-bit float")


def _constant_bad(name: str) -> Any:
    return _Bad(f"{name} is not a JSON number")


def _walk(value: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], Any]]:
    """Every (location, value) below ``value``, depth first, keys included as values."""
    stack: list[tuple[list[str | int], Any]] = [(loc, value)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                yield [*where, key], key
                stack.append(([*where, key], child))
        elif isinstance(item, list):
            stack.extend(([*where, i], child) for i, child in reversed(list(enumerate(item))))


def _locate_bad_number(text: str) -> BodyError:
    data = json.loads(text, parse_int=_int_or_bad, parse_float=_float_or_bad, parse_constant=_constant_bad)
    for where, item in _walk(data, ["body"]):
        if isinstance(item, _Bad):
            return BodyError(422, "invalid request", [_printable(part) for part in where], item.why)
    return BodyError(422, "invalid request", msg="a number cannot be represented")


def _printable(part: str | int) -> str | int:
    """A location part that is safe to put in a JSON answer (a key may itself hold a lone surrogate)."""
    return part.encode("utf-8", "backslashreplace").decode() if isinstance(part, str) else part


def _lone_surrogate_at(data: Any) -> list[str | int] | None:
    for where, item in _walk(data, ["body"]):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return [_printable(part) for part in where]
    return None


def parse_json_body(raw: bytes) -> Any:
    """Parse ``raw`` as strict JSON (UTF-8, finite numbers, safe integers, no lone surrogates)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "request body is not UTF-8") from None
    try:
        data = json.loads(text, parse_int=_strict_int, parse_float=_strict_float,
                          parse_constant=_refuse_constant)
    except _Unrepresentable:
        raise _locate_bad_number(text) from None
    except RecursionError:
        raise BodyError(400, "request body is nested too deeply") from None
    except ValueError:
        raise BodyError(400, "request body is not readable JSON") from None
    if _SURROGATE_ESCAPE.search(raw):
        where = _lone_surrogate_at(data)
        if where is not None:
            raise BodyError(422, "invalid request", where,
                            "text holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not Unicode")
    return data
