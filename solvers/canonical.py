"""RFC 8785 canonical JSON, fast for the shapes problems have: large lists of plain numbers.

The ``rfc8785`` package formats each float in Python (about 3 µs a number), so fingerprinting a
1000×1000 distance matrix took seconds of an ingress thread. Most numbers need no work at all: an
integer within ±(2**53 - 1) is its decimal digits, and a float whose shortest repr has no exponent
(1e-4 <= |x| < 1e16) is that repr without a trailing ``.0`` — exactly what RFC 8785's formatting of
ECMAScript's Number::toString produces. Anything else (exponents, non-ASCII text, big integers, NaN)
is handed to ``rfc8785`` itself, value by value or whole, so the bytes are always RFC 8785's.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

_SAFE_INTEGER = 2**53 - 1
_TRAILING_ZERO = re.compile(r"\.0(?=[,\]])")


class _Fallback(Exception):
    """This value needs the reference implementation."""


def _number(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return str(value)
        raise _Fallback
    if type(value) is float:
        if value == 0:
            return "0"
        text = repr(value)
        if "e" in text or "n" in text:  # exponent, inf, nan
            return rfc8785.dumps(value).decode()
        return text[:-2] if text.endswith(".0") else text
    raise _Fallback


def _text(value: str) -> str:
    if not value.isascii():
        raise _Fallback
    return json.dumps(value, ensure_ascii=False)


def _plain_numbers(values: list[Any]) -> str | None:
    """A list of plain floats or safe ints through the C encoder: floats are written as their shortest
    repr, which is RFC 8785's form once a trailing ``.0`` is cut, unless one has an exponent, is -0.0,
    or is not finite (then None: the careful path)."""
    if all(type(v) is float for v in values):
        text = json.dumps(values, separators=(",", ":"))
        if "e" in text or "N" in text or "I" in text or "-0.0" in text:
            return None
        return _TRAILING_ZERO.sub("", text)
    if all(type(v) is int for v in values) and -_SAFE_INTEGER <= min(values) and max(values) <= _SAFE_INTEGER:
        return json.dumps(values, separators=(",", ":"))
    return None


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        fast = _plain_numbers(value) if value else "[]"
        if fast is not None:
            return fast
        try:
            return "[" + ",".join(map(_number, value)) + "]"
        except _Fallback:
            return "[" + ",".join(map(_encode, value)) + "]"
    if isinstance(value, dict):
        keys = sorted(value)
        if not all(isinstance(key, str) for key in keys):
            raise _Fallback
        return "{" + ",".join(_text(key) + ":" + _encode(value[key]) for key in keys) + "}"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return _encode(list(value))
    return _number(value)


def canonical_json(data: Any) -> bytes:
    """The RFC 8785 canonical bytes of ``data`` (raises rfc8785's errors for what it cannot hold)."""
    try:
        return _encode(data).encode()
    except (_Fallback, TypeError):
        return rfc8785.dumps(data)
