"""The door: request bodies that later stages could not carry are refused with a 4xx naming where."""

from __future__ import annotations

import json

import pytest
import rfc8785

from api.body import SAFE_INTEGER, BodyError, parse_json_body

UNREPRESENTABLE = {
    "NaN": (b'{"metadata": {"n": NaN}}', ["body", "metadata", "n"]),
    "Infinity": (b'{"a": [1, Infinity]}', ["body", "a", 1]),
    "-Infinity": (b'{"a": -Infinity}', ["body", "a"]),
    "1e400": (b'{"p": {"x": [[0, 1e400]]}}', ["body", "p", "x", 0, 1]),
    "-1e400": (b'{"a": -1e400}', ["body", "a"]),
    "2**53 + 1": (b'{"metadata": {"n": 9007199254740993}}', ["body", "metadata", "n"]),
    "-(2**53 + 1)": (b'{"a": -9007199254740993}', ["body", "a"]),
    "2**64": (b'{"problem": {"vehicle_capacity": 18446744073709551616}}', ["body", "problem", "vehicle_capacity"]),
    "5000 digits": (b'{"a": 1' + b"0" * 5000 + b"}", ["body", "a"]),
    "lone high surrogate": (b'{"s": "\\ud800"}', ["body", "s"]),
    "lone low surrogate": (b'{"s": ["ok", "x\\udc00y"]}', ["body", "s", 1]),
    "reversed pair": (b'{"s": "\\udc00\\ud800"}', ["body", "s"]),
    "surrogate in a key": (b'{"\\ud800": 1}', ["body", "\\ud800"]),
}


@pytest.mark.parametrize("name", list(UNREPRESENTABLE))
def test_values_canonical_json_cannot_carry_are_422_with_their_location(name: str) -> None:
    raw, loc = UNREPRESENTABLE[name]
    with pytest.raises(BodyError) as caught:
        parse_json_body(raw)
    assert caught.value.status == 422
    assert caught.value.as_error()["loc"] == loc
    json.dumps(caught.value.as_error(), ensure_ascii=False).encode("utf-8")  # the answer itself is valid text


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000,
                                 b'{"a": 1} {"b": 2}', b"\x00"])
def test_unreadable_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        parse_json_body(raw)
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", [b'{"n": 9007199254740991}', b'{"n": -9007199254740991}', b'{"x": 1e17}',
                                 b'{"x": 1.7976931348623157e308}', b'{"x": 5e-324}', b'{"s": "\\ud83d\\ude00"}',
                                 b'{"s": "\\u0000\\u2028"}', "{\"s\": \"Gr\u00fc\u00dfe \U0001f69a\"}".encode()])
def test_every_value_let_in_is_canonicalisable(raw: bytes) -> None:
    data = parse_json_body(raw)
    assert json.loads(rfc8785.dumps(data)) == data


def test_the_safe_integer_bound_is_2_53_minus_1() -> None:
    assert SAFE_INTEGER == 2**53 - 1
    assert parse_json_body(str(SAFE_INTEGER).encode()) == SAFE_INTEGER
    with pytest.raises(BodyError):
        parse_json_body(str(SAFE_INTEGER + 1).encode())


def test_large_bodies_take_one_of_a_few_slots_and_the_rest_are_told_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from api import body

    monkeypatch.setattr(body, "HEAVY_WAIT_S", 0.2)
    monkeypatch.setattr(body, "_heavy", threading.BoundedSemaphore(2))
    with body.heavy_body_slot(10_000_000), body.heavy_body_slot(None):
        with body.heavy_body_slot(1000):  # small bodies never wait
            pass
        with pytest.raises(body.Busy):
            with body.heavy_body_slot(body.HEAVY_BODY_BYTES + 1):
                pass
    with body.heavy_body_slot(10_000_000):  # slots are given back
        pass
