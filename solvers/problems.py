"""Problem models: the five kinds a TMS can send, validated strictly.

Validation is the gateway's first line of defence, so every rule a solver relies on is checked here:
shapes, sizes, finite non-negative numbers, indices in range. Size limits are deliberately generous for
classical lanes; the quantum lanes apply their own much smaller limits in their capability checks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, TypeAdapter, field_validator,
                      model_validator)

from solvers.canonical import canonical_json as fast_canonical_json
from solvers.circuits import MAX_QASM_CHARS

MAX_NODES = 2000
MAX_LOADS = 2000
MAX_TRUCKS = 500
MAX_QUBO_VARS = 4096
MAX_QUBO_TERMS = 200_000
MAX_SHOTS = 100_000


def _check_finite(values: list[float], loc: str, *, non_negative: bool) -> None:
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{loc}[{i}] must be a finite number")
        if non_negative and v < 0:
            raise ValueError(f"{loc}[{i}] must be non-negative")


MAX_OBJECTIVE = 1e300


def _check_objective_bound(bound: float, what: str) -> None:
    """Refuse inputs whose objective could overflow a 64-bit float.

    Every value may be finite while their sum is not (two distances of 1e308 make a tour of inf), and
    an infinite cost can be neither compared, returned as JSON nor written to the audit log.
    """
    if not math.isfinite(bound) or bound > MAX_OBJECTIVE:
        raise ValueError(f"values too large: {what} could reach {bound:.3g}, beyond {MAX_OBJECTIVE:.0e}")


def _check_matrix(rows: list[list[float]], n_rows: int, n_cols: int, name: str) -> None:
    if len(rows) != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows, got {len(rows)}")
    for i, row in enumerate(rows):
        if len(row) != n_cols:
            raise ValueError(f"{name}[{i}] must have {n_cols} entries, got {len(row)}")
        _check_finite(row, f"{name}[{i}]", non_negative=True)


class _Strict(BaseModel):
    """Numbers must be JSON numbers (StrictFloat takes an integer too): "5" and true are refused, not
    coerced, so that what the gateway solves is what the client sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Routing(_Strict):
    """Shared by tsp and cvrp: a distance matrix or Euclidean coordinates, never both."""

    distances: list[list[StrictFloat]] | None = None
    locations: list[tuple[StrictFloat, StrictFloat]] | None = None

    @property
    def size(self) -> int:
        return len(self.distances) if self.distances is not None else len(self.locations or [])

    def distance_matrix(self) -> list[list[float]]:
        """The n×n distances, computed from `locations` when those were given."""
        if self.distances is not None:
            return [list(row) for row in self.distances]
        pts = self.locations or []
        return [[math.dist(a, b) for b in pts] for a in pts]

    @model_validator(mode="after")
    def _one_source(self) -> "_Routing":
        if (self.distances is None) == (self.locations is None):
            raise ValueError("give exactly one of 'distances' or 'locations'")
        n = self.size
        if n < 2:
            raise ValueError("a routing problem needs at least 2 nodes")
        if n > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes, got {n}")
        if self.distances is not None:
            _check_matrix(self.distances, n, n, "distances")
            longest = max(max(row) for row in self.distances)
        else:
            points = self.locations or []
            for i, (x, y) in enumerate(points):
                _check_finite([x, y], f"locations[{i}]", non_negative=False)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            longest = math.hypot(max(xs) - min(xs), max(ys) - min(ys))
        _check_objective_bound(n * longest, "a route's length")
        return self


class TspProblem(_Routing):
    kind: Literal["tsp"]


class CvrpProblem(_Routing):
    kind: Literal["cvrp"]
    demands: list[StrictInt]
    vehicle_capacity: StrictInt = Field(gt=0)
    num_vehicles: StrictInt = Field(gt=0, le=MAX_NODES)
    time_windows: list[tuple[StrictFloat, StrictFloat]] | None = None
    service_times: list[StrictFloat] | None = None
    durations: list[list[StrictFloat]] | None = None

    @property
    def has_time_windows(self) -> bool:
        return self.time_windows is not None

    def duration_matrix(self) -> list[list[float]]:
        return [list(r) for r in self.durations] if self.durations is not None else self.distance_matrix()

    @model_validator(mode="after")
    def _shapes(self) -> "CvrpProblem":
        n = self.size
        if len(self.demands) != n:
            raise ValueError(f"demands must have {n} entries (one per node), got {len(self.demands)}")
        if self.demands[0] != 0:
            raise ValueError("demands[0] must be 0: node 0 is the depot")
        for i, d in enumerate(self.demands):
            if d < 0:
                raise ValueError(f"demands[{i}] must be non-negative")
            if d > self.vehicle_capacity:
                raise ValueError(f"demands[{i}] = {d} exceeds vehicle_capacity {self.vehicle_capacity}")
        if self.time_windows is not None:
            if len(self.time_windows) != n:
                raise ValueError(f"time_windows must have {n} entries, got {len(self.time_windows)}")
            for i, (early, late) in enumerate(self.time_windows):
                _check_finite([early, late], f"time_windows[{i}]", non_negative=True)
                if early > late:
                    raise ValueError(f"time_windows[{i}]: earliest {early} is after latest {late}")
        if self.service_times is not None:
            if len(self.service_times) != n:
                raise ValueError(f"service_times must have {n} entries, got {len(self.service_times)}")
            _check_finite(self.service_times, "service_times", non_negative=True)
        if self.durations is not None:
            _check_matrix(self.durations, n, n, "durations")
            _check_objective_bound(n * max(max(row) for row in self.durations), "a route's duration")
        times = [t for window in self.time_windows or [] for t in window] + list(self.service_times or [])
        if times:
            _check_objective_bound(n * max(times), "a route's arrival time")
        return self


class AssignmentProblem(_Strict):
    kind: Literal["assignment"]
    costs: list[list[StrictFloat]]
    weights: list[StrictFloat]
    capacities: list[StrictFloat]

    @model_validator(mode="after")
    def _shapes(self) -> "AssignmentProblem":
        loads, trucks = len(self.costs), len(self.capacities)
        if loads == 0 or trucks == 0:
            raise ValueError("costs, weights and capacities must not be empty")
        if loads > MAX_LOADS or trucks > MAX_TRUCKS:
            raise ValueError(f"at most {MAX_LOADS} loads and {MAX_TRUCKS} trucks")
        _check_matrix(self.costs, loads, trucks, "costs")
        if len(self.weights) != loads:
            raise ValueError(f"weights must have {loads} entries (one per load), got {len(self.weights)}")
        _check_finite(self.weights, "weights", non_negative=True)
        _check_finite(self.capacities, "capacities", non_negative=True)
        _check_objective_bound(sum(max(row) for row in self.costs), "the assignment's cost")
        _check_objective_bound(sum(self.weights), "a truck's load")
        return self


class QuboProblem(_Strict):
    kind: Literal["qubo"]
    n: StrictInt = Field(ge=1, le=MAX_QUBO_VARS)
    terms: list[tuple[StrictInt, StrictInt, StrictFloat]] = Field(max_length=MAX_QUBO_TERMS)

    @model_validator(mode="after")
    def _indices(self) -> "QuboProblem":
        for t, (i, j, w) in enumerate(self.terms):
            if not (0 <= i < self.n and 0 <= j < self.n):
                raise ValueError(f"terms[{t}]: indices ({i}, {j}) out of range 0..{self.n - 1}")
            if not math.isfinite(w):
                raise ValueError(f"terms[{t}]: weight must be a finite number")
        _check_objective_bound(sum(abs(w) for _, _, w in self.terms), "the energy")
        return self


class CircuitProblem(_Strict):
    kind: Literal["circuit"]
    qasm: str = Field(min_length=1, max_length=MAX_QASM_CHARS)
    shots: StrictInt = Field(default=1024, ge=1, le=MAX_SHOTS)

    @field_validator("qasm")
    @classmethod
    def _parses(cls, qasm: str) -> str:
        from solvers.circuits import parse_qasm  # qiskit is heavy; import only when a circuit arrives

        parse_qasm(qasm)
        return qasm

    @property
    def num_qubits(self) -> int:
        from solvers.circuits import parse_qasm

        return parse_qasm(self.qasm).num_qubits


Problem = Annotated[
    Union[TspProblem, CvrpProblem, AssignmentProblem, QuboProblem, CircuitProblem],
    Field(discriminator="kind"),
]
PROBLEM_ADAPTER: TypeAdapter[Any] = TypeAdapter(Problem)
KINDS = ("tsp", "cvrp", "assignment", "qubo", "circuit")


def parse_problem(data: Any) -> Any:
    """Validate raw JSON data into a problem model (raises pydantic.ValidationError)."""
    return PROBLEM_ADAPTER.validate_python(data)


def canonical_json(data: Any) -> bytes:
    """RFC 8785 canonical bytes: the one serialisation that fingerprints and audit hashes are taken over."""
    return fast_canonical_json(data)


@dataclass(frozen=True)
class CanonicalProblem:
    """A problem's JSON form and its canonical bytes, made once per submission: the fingerprint, the job's
    stored problem and the content-addressed replay copy all come from these."""

    data: dict[str, Any]
    canonical: bytes

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical problem JSON, as the provenance names it."""
        return "sha256:" + hashlib.sha256(self.canonical).hexdigest()


def canonical_problem(problem: Any) -> CanonicalProblem:
    data = problem.model_dump(mode="json", exclude_none=True)
    return CanonicalProblem(data, canonical_json(data))


def fingerprint(problem: Any) -> str:
    """sha256 of the canonical problem JSON, as the provenance names it."""
    return canonical_problem(problem).fingerprint
