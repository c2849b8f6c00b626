"""The audit log's fast canonical form is byte for byte RFC 8785: a differential test against ``rfc8785``.

Over 100,000 generated entries (seeded) — text from every Unicode plane, escapes and control characters,
keys whose order differs between code points and UTF-16 code units, nested objects and arrays, empty
ones, integers up to ±(2**53 - 1), floats of every magnitude including subnormals and -0.0 — the hash
body, the signed bytes and the line the writer produces must be exactly what ``rfc8785.dumps`` gives,
and whatever ``rfc8785`` refuses (an integer beyond 2**53 - 1, NaN, a lone surrogate, a key not a
string) must be refused with the same exception. Every entry sealed also reads back equal and verifies.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
import random
import struct
import sys
from typing import Any, Callable

import pytest
import rfc8785

from audit.canonical import canonical_json, encode_value
from audit.entry import decode_line, encode_line, entry_hash, seal_entry, signed_bytes

ENTRIES = 100_000
SAFE = 2**53 - 1

# Characters chosen to hit every branch of string escaping and of key ordering: ASCII, the 32 control
# characters, quote and backslash, DEL, Latin-1, 2- and 3-byte UTF-8, the U+E000–U+FFFF block (which
# sorts above a surrogate pair in UTF-16 but below it by code point), and every supplementary plane.
CONTROL = [chr(c) for c in range(0x20)]
SPECIAL = ['"', "\\", "/", "\x7f", "\x80", "\u00e9", "\u00ff", "\u2028", "\u2029", "\ufeff", "\ue000", "\uf8ff",
           "\ufb01", "\ufffd", "\uffff", "\U00010000", "\U0001f600", "\U0001f69a", "\U00020000", "\U000e0001",
           "\U000f0000", "\U0010ffff"]


class Colour(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


class Ratio(float):
    pass


def _char(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return chr(rng.randrange(0x20, 0x7f))
    if roll < 0.65:
        return rng.choice(CONTROL)
    if roll < 0.75:
        return rng.choice(SPECIAL)
    if roll < 0.85:
        return chr(rng.randrange(0x80, 0xd800))
    if roll < 0.92:
        return chr(rng.randrange(0xe000, 0x10000))
    return chr(rng.randrange(0x10000, 0x110000))


# The characters texts are drawn from: a large pool drawn once by ``_char`` (texts are then drawn from
# it in one C call each, which keeps 100,000 entries fast).
_POOL_RNG = random.Random(0x10FFFF)
POOL = [_char(_POOL_RNG) for _ in range(65_536)]


def _text(rng: random.Random, refusals: bool) -> str:
    text = "".join(rng.choices(POOL, k=rng.choice((0, 1, 2, 3, 5, 8, 13, 24))))
    if refusals and rng.random() < 0.02:  # a lone surrogate: not UTF-8, refused
        at = rng.randrange(len(text) + 1)
        text = text[:at] + chr(rng.randrange(0xd800, 0xe000)) + text[at:]
    return text


# Keys sharing a prefix and then differing between a supplementary-plane character and one of
# U+E000–U+FFFF: code point order and UTF-16 order disagree on every such pair.
ORDER_KEYS = ["a", "a\ue000", "a\uffff", "a\U00010000", "a\U0001f600", "a\U0010ffff", "\ufb01", "\U0001f69a",
              "\uff61x", "\U00020000x", "b", "", "\ud7ff", "\u00e9", "A", "aa", "hash", "sig", "seq", "kid"]


def _key(rng: random.Random, refusals: bool) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(("type", "ts", "job_id", "tenant", "data", "lane", "outcome", "n", "x", "attempt"))
    if roll < 0.6:
        return rng.choice(ORDER_KEYS) + rng.choice(("", "", "", "z", "\U0001f600", "\uffee"))
    if refusals and roll > 0.996:  # keys rfc8785 refuses, or that only the reference takes
        return rng.choice((1, 2.5, None, True, b"k", (1, 2), Text("sub")))
    return _text(rng, refusals)


def _int(rng: random.Random, refusals: bool) -> Any:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice((0, 1, -1, SAFE, -SAFE, SAFE - 1, -SAFE + 1, 2**31, -(2**31), 2**32, 10**15, -(10**15)))
    if refusals and roll > 0.985:
        return rng.choice((SAFE + 1, -SAFE - 1, 2**64, -(2**70), 10**30))
    value = rng.getrandbits(rng.randrange(1, 54))
    return min(value, SAFE) * rng.choice((1, -1))


FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1e-7, 1e-6, 9.999999999999999e-7, 1.5e-6, 1e-5, 1e-4, 1e15, 1e16,
               9999999999999998.0, 1e17, 1e20, 1e21, 9.999999999999999e20, 1e22, 2.0**53, 2.0**53 + 2, 2.0**60,
               1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 123456789.125,
               0.30000000000000004, 1234567.0, 4.35, 1e300, 1.2345678901234567e20, 1.2345678901234567e-7]


def _float(rng: random.Random, refusals: bool) -> float:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(FLOAT_EDGES) * rng.choice((1.0, -1.0))
    if roll < 0.15:  # a subnormal
        return struct.unpack("<d", rng.getrandbits(52).to_bytes(8, "little"))[0] * rng.choice((1.0, -1.0))
    if roll < 0.45:  # any bit pattern: every magnitude the format has
        while True:
            value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if math.isfinite(value):
                return value
    if roll < 0.6:  # a whole number, as a float
        return float(rng.getrandbits(rng.randrange(1, 70))) * rng.choice((1.0, -1.0))
    if roll < 0.8:  # the kind of numbers events carry: a few decimals, any scale
        return round(rng.uniform(-1, 1) * 10 ** rng.randrange(-9, 23), rng.randrange(0, 8))
    if refusals and roll > 0.99:
        return rng.choice((math.nan, math.inf, -math.inf))
    return rng.uniform(-1e6, 1e6) * 10.0 ** rng.randrange(-30, 30)


def _scalar(rng: random.Random, refusals: bool) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return _text(rng, refusals)
    if roll < 0.6:
        return _int(rng, refusals)
    if roll < 0.88:
        return _float(rng, refusals)
    if roll < 0.95:
        return rng.choice((True, False, None))
    if refusals and roll > 0.994:  # types only the reference takes (or refuses)
        return rng.choice((Colour.RED, Level.HIGH, Text("sub"), Ratio(2.5), object(), b"bytes", {1, 2}))
    return rng.choice(("", 0, -0.0, True))


def _value(rng: random.Random, depth: int, refusals: bool) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.7:
        return _scalar(rng, refusals)
    if roll < 0.82:
        return {_key(rng, refusals): _value(rng, depth + 1, refusals) for _ in range(rng.choice((0, 1, 2, 3, 4)))}
    if roll < 0.97:
        return [_value(rng, depth + 1, refusals) for _ in range(rng.choice((0, 1, 2, 3, 5)))]
    if roll < 0.985:  # a list long enough for the plain-numbers path
        kind = rng.choice((_float, _int))
        return [kind(rng, refusals and rng.random() < 0.2) for _ in range(rng.randrange(16, 24))]
    if refusals:  # written as an array, but never reads back as a tuple
        return tuple(_value(rng, depth + 1, refusals) for _ in range(rng.choice((0, 2))))
    return []


def _event(rng: random.Random) -> dict[Any, Any]:
    refusals = rng.random() < 0.15  # most entries are well formed, as the writer's are
    event: dict[Any, Any] = {"type": rng.choice(("job.accepted", "attempt.succeeded", "audit.quarantined"))}
    if rng.random() < 0.8:
        event["ts"] = 1_700_000_000 + rng.random() * 1e8
    for _ in range(rng.choice((0, 1, 2, 3, 4))):
        event[_key(rng, refusals)] = _value(rng, 1, refusals)
    if rng.random() < 0.5:
        event["data"] = {_key(rng, refusals): _value(rng, 2, refusals) for _ in range(rng.choice((0, 1, 3, 5)))}
    if rng.random() < 0.01:  # an event carrying the entry's own fields: they are overridden or skipped
        event[rng.choice(("hash", "sig", "seq", "kid"))] = _value(rng, 3, refusals)
    return event


class RecordingSigner:
    """A stand-in for the Ed25519 signer: records what it signs, "signs" with SHA-512 (fast)."""

    kid = "test-kid-\u00e9"

    def __init__(self) -> None:
        self.signed: list[bytes] = []

    def sign(self, data: bytes) -> bytes:
        self.signed.append(data)
        return hashlib.sha512(data).digest()


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # the exception itself is what is compared
        return "raised", (type(exc), str(exc))


def _reference(seq: int, prev: str, event: dict[Any, Any], event_id: str,
               signer: RecordingSigner | None) -> tuple[str, Any]:
    """What the writer did before the fast form: three rfc8785 canonicalisations."""
    def run() -> tuple[bytes, str, bytes | None, bytes]:
        entry: dict[Any, Any] = {"seq": seq, "prev": prev, "event_id": event_id, **event}
        if signer is not None:
            entry["kid"] = signer.kid
        body = rfc8785.dumps({k: v for k, v in entry.items() if k not in ("hash", "sig")})
        entry["hash"] = hashlib.sha256(body).hexdigest()
        signed = None
        if signer is not None:
            signed = rfc8785.dumps({k: v for k, v in entry.items() if k != "sig"})
            entry["sig"] = base64.b64encode(hashlib.sha512(signed).digest()).decode()
        return body, entry["hash"], signed, rfc8785.dumps(entry) + b"\n"
    return _outcome(run)


def _check_entry(rng: random.Random, i: int) -> str:
    """Compare one generated entry both ways; return what happened (for the coverage counts)."""
    event = _event(rng)
    seq = rng.choice((i, rng.randrange(SAFE)))
    prev = "%064x" % rng.getrandbits(256)
    event_id = f"{1_700_000_000_000 + i}-{rng.randrange(10)}"
    signer = RecordingSigner() if rng.random() < 0.5 else None
    expected = _reference(seq, prev, event, event_id, signer)
    got = _outcome(lambda: seal_entry(seq, prev, event, event_id, signer))

    def context() -> str:  # only built for a failure's message
        return f"entry {i}: event {event!r}"

    if expected[0] == "raised":
        assert got == expected, context()
        return "refused"
    outcome = "written"
    if got[0] == "raised" and got[1] == (ValueError, "the entry does not read back as written"):
        outcome = "refused on read-back"
        if signer is not None:
            signer.signed.clear()
        got = _outcome(lambda: seal_entry(seq, prev, event, event_id, signer, readback=False))
    assert got[0] == "ok", f"{context()}: {got[1]!r}"
    body, digest, signed, line = expected[1]
    entry, written = got[1]
    assert written == line, context()
    assert entry["hash"] == digest, context()
    assert canonical_json({k: v for k, v in entry.items() if k not in ("hash", "sig")}) == body, context()
    if signer is not None:
        assert signer.signed == [signed], context()  # the signed bytes, as the writer signs them
    decoded = decode_line(line)
    if outcome == "refused on read-back":
        assert decoded != entry, context()
        return outcome
    # What the writer wrote reads back equal, and verifies: a verifier rebuilds the same bytes.
    assert decoded == entry, context()
    assert entry_hash(decoded) == decoded["hash"] == digest, context()
    if signer is not None:
        assert signed_bytes(decoded) == signed, context()
    assert encode_line(decoded) == line, context()
    return outcome


def test_entries_are_byte_for_byte_rfc8785_and_refused_alike() -> None:
    rng = random.Random(8785)
    seen: dict[str, int] = {}
    for i in range(ENTRIES):
        outcome = _check_entry(rng, i)
        seen[outcome] = seen.get(outcome, 0) + 1
    assert sum(seen.values()) == ENTRIES
    # the generator reaches every path: most entries written, some refused by rfc8785, some on read-back
    assert seen["written"] > 0.8 * ENTRIES, seen
    assert seen["refused"] > 0.01 * ENTRIES, seen
    assert seen["refused on read-back"] > 50, seen


def test_values_of_every_kind_are_byte_for_byte_rfc8785() -> None:
    """Any value, not only entries: top-level scalars, arrays (the C path of plain numbers), tuples."""
    rng = random.Random(53)
    for i in range(20_000):
        value = _value(rng, rng.randrange(5), refusals=rng.random() < 0.3)
        expected = _outcome(lambda: rfc8785.dumps(value))
        assert _outcome(lambda: canonical_json(value)) == expected, f"value {i}: {value!r}"


@pytest.mark.parametrize("value", [
    {"\U0001f600": 1, "\ufb01": 2, "\ue000": 3, "a": 4},  # UTF-16: a < U+D83D U+DE00 < U+E000 < U+FB01
    {"a\U00010000": 1, "a\uffff": 2, "a": 3},
    {"\t\n\r\b\f\x00\x1f\x7f": "\"\\/\u2028"},
    {"big": SAFE, "small": -SAFE, "f": [1e21, 1e-7, -0.0, 5e-324, 1e16, 9007199254740992.0]},
    [float(2**i) for i in range(-1074, 1024, 7)],
    [-(10.0 ** i) for i in range(-30, 30)],
    list(range(-SAFE, -SAFE + 40)),
    {"": {}, "e": [], "n": [[], {}, [[]]]},
])
def test_edge_values(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"k": SAFE + 1}, {"k": [-SAFE - 1]}, [math.nan], {"k": math.inf}, [-math.inf] * 20, "\ud800", {"\udfff": 1},
    {"a": "\ud800", "b": math.nan}, {1: 2}, {"a": 1, 2: 3}, {(1,): 2}, object(), {"s": {1, 2}}, b"x",
])
def test_what_the_reference_refuses_is_refused_alike(value: Any) -> None:
    expected = _outcome(lambda: rfc8785.dumps(value))
    assert expected[0] == "raised"
    assert _outcome(lambda: canonical_json(value)) == expected


def test_subclasses_and_tuples_take_the_reference_path_with_the_same_bytes() -> None:
    value = {"colour": Colour.RED, "level": Level.HIGH, "text": Text("x"), "ratio": Ratio(2.0), "t": (1, (2.5,)),
             Text("key"): 1}
    assert canonical_json(value) == rfc8785.dumps(value)
    with pytest.raises(KeyError):  # the strict form, the writer's, leaves tuples to the reference
        encode_value((1, 2), strict=True)


def test_nesting_deeper_than_the_fast_path_goes_to_the_reference() -> None:
    depth = sys.getrecursionlimit() // 2  # the fast path takes two frames a level, the reference one
    value: Any = 1
    for _ in range(depth):
        value = [value]
    assert _outcome(lambda: canonical_json(value)) == _outcome(lambda: rfc8785.dumps(value))


def test_a_tuple_in_an_event_is_refused_by_the_writer_as_before() -> None:
    with pytest.raises(ValueError, match="does not read back"):
        seal_entry(0, "0" * 64, {"type": "x", "pair": (1, 2)}, "1-0")
    entry, line = seal_entry(0, "0" * 64, {"type": "x", "pair": (1, 2)}, "1-0", readback=False)
    assert line == rfc8785.dumps(entry) + b"\n"
