"""The policy engine: a Rego policy and its data, compiled once per process, evaluated per distinct input.

A ``PolicyBundle`` is the policy's modules and data with their sha256 (what the audit names). ``evaluate``
runs the prebuilt query ``data.qgate.policy.decision`` under a lock (one regopy interpreter is not safe to
share between threads) and caches decisions by the input's canonical JSON: most submits repeat a handful
of (tenant, scopes, request, lane cost) inputs, so the interpreter runs once per distinct one.
No Flask, Celery or settings here: paths and values come from the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import regopy

from policy.files import MAX_DATA_BYTES, MAX_MODULE_BYTES, PolicyFileError, read_text
from policy.isolation import TIMEOUT_S as COMPILE_TIMEOUT_S, IsolatedFailure, check_in_child
from policy.terms import TermError, rego_json

QUERY = "decision := data.qgate.policy.decision"
DEFAULT_POLICY = Path(__file__).with_name("qgate.rego")
DEFAULT_DATA = Path(__file__).with_name("data.json")
CACHE_SIZE = 4096
TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.M)
PACKAGE = re.compile(r"^package\s+([A-Za-z0-9_.]+)", re.M)


class PolicyError(ValueError):
    """A policy or its data cannot be read, compiled or evaluated."""


@dataclass(frozen=True)
class Decision:
    """What the policy said: a whole-request refusal (403) or None, and per lane the reasons it may not be
    used (``access``: checked before the lane's capability; ``budget``: after its health)."""

    refusal: str | None
    access: Mapping[str, tuple[str, ...]]
    budget: Mapping[str, tuple[str, ...]]
    bundle_sha256: str

    def reasons(self) -> list[str]:
        return [f"{lane}: {r}" for part in (self.access, self.budget) for lane, rs in part.items() for r in rs]


def _modules(path: Path) -> dict[str, str]:
    """The policy's modules: ``path`` itself, or every ``.rego`` in it that is not a test."""
    try:
        if path.is_dir():
            return {p.name: read_text(p, MAX_MODULE_BYTES) for p in sorted(path.glob("*.rego"))
                    if not p.name.endswith("_test.rego")}
        return {path.name: read_text(path, MAX_MODULE_BYTES)}
    except (PolicyFileError, OSError) as exc:
        raise PolicyError(str(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _data(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(read_text(path, MAX_DATA_BYTES), parse_constant=_refuse_constant)
        rego_json(document)  # refuses what the engine cannot be given (non-finite, too deep) before it is
    except PolicyFileError as exc:
        raise PolicyError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"{path}: not JSON the policy can use ({str(exc)[:200]})") from None
    if not isinstance(document, dict) or not isinstance(document.get("qgate"), dict):
        raise PolicyError(f"{path}: want an object with the key 'qgate'")
    return document


def _interpreter(modules: Mapping[str, str], data: Mapping[str, Any]) -> regopy.Interpreter:
    rego = regopy.Interpreter()
    try:
        for name, source in modules.items():
            rego.add_module(name, source)
        rego.add_data_json(rego_json(data))
    except regopy.RegoError as exc:
        raise PolicyError(f"policy does not compile: {str(exc)[:500]}") from None
    except TermError as exc:
        raise PolicyError(f"policy data: {exc}") from None
    return rego


def compile_checked(modules: Mapping[str, str], data: Mapping[str, Any], *, smoke: bool = True) -> "PolicyBundle":
    """Compile in this process (no child first) and, with ``smoke``, make one decision: what the child
    of ``policy.isolation`` runs, and what ``PolicyBundle.load`` runs once that child survived."""
    digest = hashlib.sha256()
    for name, source in sorted(modules.items()):
        digest.update(f"{len(name)}:{name}{len(source)}:{source}".encode())
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    bundle = PolicyBundle(modules, data, digest.hexdigest(), "")
    bundle._rego = _interpreter(modules, data)
    if not smoke:
        return bundle
    try:
        bundle._query = bundle._rego.build(QUERY)
    except regopy.RegoError as exc:
        raise PolicyError(f"policy does not compile: {str(exc)[:500]}") from None
    bundle.evaluate(SMOKE_INPUT)  # a policy that cannot decide is not loaded
    return bundle


def _isolated(modules: Mapping[str, str], data: Mapping[str, Any], *, smoke: bool,
              timeout_s: float = COMPILE_TIMEOUT_S) -> None:
    try:
        check_in_child(modules, data, smoke=smoke, timeout_s=timeout_s)
    except IsolatedFailure as exc:
        raise PolicyError(str(exc)) from None


@dataclass
class PolicyBundle:
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    sha256: str
    origin: str
    _rego: Any = field(default=None, repr=False)
    _query: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: "OrderedDict[str, Decision]" = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def load(cls, policy_path: Path, data_path: Path, *, isolate: bool = True,
             compile_timeout_s: float = COMPILE_TIMEOUT_S) -> "PolicyBundle":
        """Read, compile and smoke-test a policy; PolicyError says what is wrong. With ``isolate`` (the
        default) a child process compiles it first (``policy.isolation``): a policy that crashes the
        engine is refused instead of ending this process."""
        modules, data = _modules(Path(policy_path)), _data(Path(data_path))
        if not modules:
            raise PolicyError(f"{policy_path}: no .rego module")
        if isolate:
            _isolated(modules, data, smoke=True, timeout_s=compile_timeout_s)
        bundle = compile_checked(modules, data)
        bundle.origin = f"{policy_path} + {data_path}"
        return bundle

    def evaluate(self, policy_input: Mapping[str, Any]) -> Decision:
        try:
            key = rego_json(_sorted(policy_input))
        except TermError as exc:
            raise PolicyError(f"policy input: {exc}") from None
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            self._rego.set_input_term(key)
            output = self._rego.query_bundle(self._query)
            decision = self._decision(output)
            self._cache[key] = decision
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return decision

    def _decision(self, output: Any) -> Decision:
        try:
            value = json.loads(str(output))["bindings"]["decision"]
            access = {lane: tuple(map(str, rs)) for lane, rs in value["access"].items()}
            budget = {lane: tuple(map(str, rs)) for lane, rs in value["budget"].items()}
            refusal = value.get("refusal")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise PolicyError(f"the policy gave no decision ({type(exc).__name__}): {str(output)[:300]}") from None
        return Decision(None if refusal is None else str(refusal), access, budget, self.sha256)


SMOKE_INPUT = {"tenant": "-", "scopes": [], "request": {"solver": "auto", "cost_tier": "standard", "metadata": {}},
               "lanes": {lane: {"cost_usd": 0.0, "provider": None, "region": "local"}
                         for lane in ("qpu", "sim", "heuristic")},
               "config": {"standard_tier_max_usd": 0.0}}


def run_tests(policy_path: Path, data_path: Path, test_paths: list[Path]) -> list[tuple[str, bool]]:
    """Every ``test_`` rule of the test modules, evaluated against the policy and data: (name, passed)."""
    try:
        modules = _modules(policy_path) if not policy_path.is_dir() else {
            p.name: read_text(p, MAX_MODULE_BYTES) for p in sorted(policy_path.glob("*.rego"))}
        for path in test_paths:
            modules[path.name] = read_text(path, MAX_MODULE_BYTES)
    except PolicyFileError as exc:
        raise PolicyError(str(exc)) from None
    data = _data(data_path)
    _isolated(modules, data, smoke=False)
    rego = _interpreter(modules, data)
    results = []
    for source in modules.values():
        package = PACKAGE.search(source)
        if package is None:
            continue
        for name in dict.fromkeys(TEST_RULE.findall(source)):
            try:
                output = json.loads(str(rego.query(f"data.{package.group(1)}.{name}")))
                passed = output.get("expressions") == [True]
            except (regopy.RegoError, ValueError, RecursionError):
                passed = False
            results.append((f"{package.group(1)}.{name}", passed))
    return results


def _sorted(value: Any) -> Any:
    """``value`` with every object's keys sorted: one cache key per distinct input."""
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted(item) for item in value]
    return value
