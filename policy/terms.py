"""JSON for the Rego engine: data and input written in a form regopy can carry.

regopy (0.4) dies with SIGSEGV, taking the whole process, when it prints a number literal that has an
exponent but no fraction (``1e20``, ``1e-05``, ``2E5``), and Python's ``json`` writes large and small
floats exactly that way. Here every such float gets a fraction (``1.0e+20``), which regopy reads and
prints like any number. Nesting is bounded too: a policy's data is configuration, not a document store.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class TermError(ValueError):
    """A value the Rego engine must not be given (non-finite number, nested beyond MAX_DEPTH, odd type)."""


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise TermError(f"{value!r} is not a JSON number")
    text = repr(value)
    mantissa, exponent_mark, exponent = text.partition("e")
    if exponent_mark and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text


def _encode(value: Any, depth: int, out: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise TermError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float):
        out.append(_float(value))
    elif value is None or isinstance(value, (bool, int, str)):
        out.append(json.dumps(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + json.dumps(str(key)) + ":")
            _encode(item, depth + 1, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, depth + 1, out)
        out.append("]")
    else:
        raise TermError(f"a {type(value).__name__} is not JSON")


def rego_json(value: Any) -> str:
    """``value`` as JSON text that regopy can parse and print back (see the module's docstring)."""
    out: list[str] = []
    _encode(value, 0, out)
    return "".join(out)
