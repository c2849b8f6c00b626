"""RFC 8785 canonical JSON, byte for byte what the ``rfc8785`` package writes, but fast.

The ``rfc8785`` package (the reference) serialises value by value in Python: about 30 µs for an audit
entry and about 3 µs per float of a problem's distance matrix. This module writes the same bytes for
the shapes qgate has, using the C string escaper of the standard ``json`` module:

- strings: ``json``'s ``encode_basestring`` (the ``ensure_ascii=False`` form) escapes exactly what RFC
  8785 escapes — ``"``, ``\\``, and U+0000–U+001F as ``\\b \\t \\n \\f \\r`` or ``\\u00xx`` (lower-case
  hex) — and writes all other text as is, encoded as UTF-8 at the end;
- integers: decimal digits within ±(2**53 - 1);
- floats: the shortest round-trip ``repr``, re-written in ECMAScript's Number::toString form (no
  trailing ``.0``, positional from 1e-6 up to 1e21, ``e+N``/``e-N`` beyond), exactly as ``rfc8785``
  re-writes ``str(float)``;
- object keys sorted by their UTF-16 code units: by code point whenever no key of the object holds a
  character beyond the BMP (the two orders only differ between U+E000–U+FFFF and surrogate pairs),
  else by their UTF-16-BE bytes.

Whenever the fast path is unsure — a type other than exactly dict/list/tuple/str/int/float/bool/None
(subclasses included: enums, str subclasses), an integer beyond ±(2**53 - 1), NaN or an infinity, a
lone surrogate, a key not exactly a str, a structure nested deeper than the fast path's recursion
allows — the whole value is handed to ``rfc8785.dumps``, so the bytes, or the exception, are always
the reference's.

The audit writer builds an entry's three canonical forms (hash body, signed bytes, line) from one set
of member texts: see :func:`object_members`.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring
from typing import Any, Callable

import rfc8785

__all__ = ["UNSURE", "Fallback", "canonical_json", "encode_value", "join_members", "object_members"]

SAFE_INTEGER = 2**53 - 1
_TRAILING_ZERO = re.compile(r"\.0(?=[,\]])")
_PLAIN_LIST = 16  # from this length a list is first tried as plain numbers through the C encoder


class Fallback(Exception):
    """The fast path is unsure about this value: the reference implementation must decide."""


# Everything the fast path may raise before handing the value to the reference implementation.
UNSURE: tuple[type[BaseException], ...] = (Fallback, KeyError, TypeError, UnicodeError, RecursionError)


def _int(value: int) -> str:
    if -SAFE_INTEGER <= value <= SAFE_INTEGER:
        return str(value)
    raise Fallback


def _exponent_form(text: str) -> str:
    """``repr`` of a finite non-zero float written with an exponent, in RFC 8785's form."""
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp = text.partition("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    exponent = int(exp)
    if 0 < exponent < 21:  # an integer of up to 21 digits, written out
        digits = mantissa.replace(".", "")
        return sign + digits + "0" * (exponent + 1 - len(digits))
    if -7 < exponent < 0:  # 0.000001 and up are written positionally
        return sign + "0." + "0" * (-exponent - 1) + mantissa.replace(".", "")
    return sign + mantissa + ("e+" if exponent > 0 else "e-") + str(abs(exponent))


def _float(value: float) -> str:
    if value == 0:
        return "0"  # -0.0 too
    text = repr(value)
    if "e" in text:
        return _exponent_form(text)
    if "n" in text:  # nan, inf, -inf: the reference raises FloatDomainError
        raise Fallback
    return text[:-2] if text.endswith(".0") else text


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _null(value: None) -> str:
    return "null"


def _plain_numbers(values: list[Any]) -> str | None:
    """A list of only floats, or only safe ints, through the C encoder (None: take the careful path).

    Floats come out as their shortest ``repr``, which is RFC 8785's form once a trailing ``.0`` is cut,
    unless one has an exponent, is -0.0, or is not finite."""
    first = type(values[0])
    if first is float and all(type(v) is float for v in values):
        text = json.dumps(values, separators=(",", ":"))
        if "e" in text or "N" in text or "I" in text or "-0.0," in text or "-0.0]" in text:
            return None
        return _TRAILING_ZERO.sub("", text)
    if first is int and all(type(v) is int for v in values) and \
            -SAFE_INTEGER <= min(values) and max(values) <= SAFE_INTEGER:
        return json.dumps(values, separators=(",", ":"))
    return None


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")  # a lone surrogate fails later, at the UTF-8 encoding


_STR_ONLY = {str}


def _sorted_keys(value: dict[str, Any]) -> list[str]:
    """A non-empty object's keys in RFC 8785 order (by UTF-16 code units); Fallback unless every key is
    exactly a str (a subclass could compare or hash its own way)."""
    if set(map(type, value)) != _STR_ONLY:
        raise Fallback
    keys = sorted(value)
    joined = "".join(keys)
    if not joined.isascii() and max(joined) > "\uffff":
        keys.sort(key=_utf16)
    return keys


class _KeyTexts(dict):  # type: ignore[type-arg]
    """``"key":`` for each key seen, so that the keys every entry has are escaped once. Bounded: when
    full it starts afresh, and the keys in use come back at once."""

    def __missing__(self, key: str) -> str:
        text = encode_basestring(key) + ":"
        if len(key) <= 64:
            if len(self) >= 4096:
                self.clear()
            self[key] = text
        return text


_KEY_TEXTS = _KeyTexts()


def _encoders(*, tuples: bool) -> dict[type, Callable[[Any], str]]:
    """The encoder of each exact type; ``tuples``: a tuple is written as the array it stands for (the
    strict table leaves tuples to the reference, so that whatever it encodes reads back equal)."""

    def array(value: list[Any] | tuple[Any, ...]) -> str:
        if not value:
            return "[]"
        if len(value) >= _PLAIN_LIST and type(value) is list:
            plain = _plain_numbers(value)
            if plain is not None:
                return plain
        return "[" + ",".join([encoders[type(item)](item) for item in value]) + "]"

    def obj(value: dict[str, Any]) -> str:
        if not value:
            return "{}"
        return "{" + ",".join([key_texts[key] + encoders[type(item)](item)
                               for key in _sorted_keys(value) for item in (value[key],)]) + "}"

    key_texts = _KEY_TEXTS
    encoders: dict[type, Callable[[Any], str]] = {
        str: encode_basestring, int: _int, float: _float, dict: obj, list: array, bool: _bool, type(None): _null,
    }
    if tuples:
        encoders[tuple] = array
    return encoders


_ENCODERS = _encoders(tuples=True)
_STRICT = _encoders(tuples=False)


def encode_value(value: Any, *, strict: bool = False) -> str:
    """The canonical text of ``value`` (not yet UTF-8: a lone surrogate only fails at the encoding).

    Raises one of :data:`UNSURE` whenever the reference implementation must decide instead. With
    ``strict``, only values built of exactly dict, list, str, int, float, bool and None are written:
    such a value reads back from its canonical JSON equal to itself and canonicalises again to the
    same bytes (``decode(canonical(x)) == x`` and ``canonical(decode(canonical(x))) == canonical(x)``,
    proven over generated values by the differential test)."""
    return (_STRICT if strict else _ENCODERS)[type(value)](value)


def canonical_json(data: Any) -> bytes:
    """The RFC 8785 canonical bytes of ``data``; raises exactly what ``rfc8785.dumps`` raises."""
    try:
        return _ENCODERS[type(data)](data).encode()
    except UNSURE:
        return rfc8785.dumps(data)


def object_members(obj: dict[str, Any], skip: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The keys of ``obj`` but ``skip``, in RFC 8785 order, and the text of each member (``"key":value``),
    written strictly (see :func:`encode_value`).

    ``join_members`` of the texts is the object's canonical text (once UTF-8 encoded; a lone surrogate
    raises UnicodeEncodeError there). A member whose key is ASCII can be added at
    ``bisect.bisect_left(keys, key)``: against an ASCII key, code point and UTF-16 order agree.
    Raises one of :data:`UNSURE` when the reference must decide (``obj`` not exactly a dict, among others)."""
    if type(obj) is not dict or not obj:
        raise Fallback
    keys = _sorted_keys(obj)
    for key in skip:
        if key in obj:
            keys.remove(key)
    key_texts, encoders = _KEY_TEXTS, _STRICT
    return keys, [key_texts[key] + encoders[type(item)](item) for key in keys for item in (obj[key],)]


def join_members(texts: list[str]) -> str:
    """The canonical text of an object from its members' texts, in order."""
    return "{" + ",".join(texts) + "}"
