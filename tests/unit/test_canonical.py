"""The fast canonical JSON is byte for byte RFC 8785 (the ``rfc8785`` package is the reference)."""

from __future__ import annotations

import math
import random
import struct

import pytest
import rfc8785

import audit.canonical
from solvers.canonical import canonical_json

EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1e-4, 9.999999999999999e-5, 1e-7, 1e-6, 1.5e-6, 123.456, 1e15,
               9999999999999998.0, 1e16, 1e17, 1e20, 1e21, 1e22, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
               2.0**53, 2.0**53 + 2, 0.30000000000000004, 100.0, 1234567.0, 4.35, 333333333.3333333]
EDGE_INTS = [0, 1, -1, 2**31, -(2**31), 2**53 - 1, -(2**53 - 1), 10**15]


def _random_float(rng: random.Random) -> float:
    while True:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


@pytest.mark.parametrize("value", EDGE_FLOATS + [-v for v in EDGE_FLOATS] + EDGE_INTS + [True, False, None])
def test_scalars_match_the_reference(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json([value, value]) == rfc8785.dumps([value, value])


def test_random_bit_patterns_match_the_reference() -> None:
    rng = random.Random(8785)
    values = [_random_float(rng) for _ in range(20_000)] + [rng.uniform(-1e6, 1e6) for _ in range(20_000)]
    assert canonical_json(values) == rfc8785.dumps(values)


@pytest.mark.parametrize("data", [
    {"kind": "tsp", "distances": [[0, 1.5], [2, 0]]},
    {"b": 1, "a": [1, "x", None, {"z": [], "y": {}}], "A": True},
    {"text": "quote \" backslash \\ newline \n tab \t nul \u0000 del \u007f"},
    {"unicode": "Grüße \U0001f69a", "\u00e9": 1, "e": 2},
    {"big": 2**60},
    [[1, 2.5], [3e-7, 4e22]],
    {"t": (1, 2.0)},
])
def test_structures_match_the_reference_or_raise_alike(data: object) -> None:
    try:
        expected = rfc8785.dumps(data)
    except rfc8785.CanonicalizationError:
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(data)
        return
    assert canonical_json(data) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "\ud800", 2**53])
def test_what_the_reference_refuses_is_refused(value: object) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json({"v": [value]})


def test_problems_and_the_audit_log_share_one_implementation() -> None:
    """One canonical form: the fingerprints' and the audit log's (proven against rfc8785 in
    test_audit_canonical.py over generated entries)."""
    assert canonical_json is audit.canonical.canonical_json
