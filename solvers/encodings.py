"""Problems as QUBOs for the QAOA lane, and QAOA samples back into answers the gateway can score.

Pure numpy: nothing here imports qiskit, so encodings can be built, tested and decoded anywhere.

Conventions used throughout:

* A `Qubo` is ``E(x) = offset + linear·x + x·quadratic·x`` over bits ``x_i ∈ {0, 1}``, with ``quadratic``
  strictly upper triangular (a term ``(i, j, w)`` with ``i > j`` is folded onto ``(j, i)``; ``i == j`` is
  linear because ``x² = x``).
* Ising spins are ``z_i = 1 - 2 x_i``: bit 0 is spin +1, the ``|0⟩`` eigenstate of Pauli Z.
* Basis-state index ``k`` holds ``x_i = (k >> i) & 1``: qubit i is bit i, qiskit's little-endian order.
  `energy_vector` and `indices_to_bits` use this order, so a statevector's probabilities line up with
  the energies without any reordering.

Encodings keep the objective exact on feasible bit vectors: the one-hot penalties' constants go into the
offset, so a feasible sample's QUBO energy equals its tour or assignment cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# Relative slack for capacity comparisons, as in solvers.objective.
_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class Qubo:
    """``E(x) = offset + linear·x + x·quadratic·x``; ``quadratic`` is strictly upper triangular."""

    n: int
    linear: np.ndarray
    quadratic: np.ndarray
    offset: float = 0.0

    def energy(self, bits: Sequence[int] | np.ndarray) -> float:
        x = np.asarray(bits, dtype=np.float64)
        return float(self.offset + x @ self.linear + x @ self.quadratic @ x)

    def energies(self, bits: np.ndarray) -> np.ndarray:
        """Energies of the rows of a ``(k, n)`` 0/1 matrix."""
        x = np.asarray(bits, dtype=np.float64)
        return self.offset + x @ self.linear + np.einsum("ki,ki->k", x @ self.quadratic, x)

    def terms(self) -> list[tuple[int, int, float]]:
        """Non-zero terms ``(i, j, w)`` with ``i <= j`` (``i == j`` linear); the offset is not a term."""
        out = [(i, i, float(w)) for i, w in enumerate(self.linear) if w != 0.0]
        rows, cols = np.nonzero(self.quadratic)
        out.extend((int(i), int(j), float(self.quadratic[i, j])) for i, j in zip(rows, cols))
        return sorted(out)

    def interactions(self) -> list[tuple[int, int]]:
        """Pairs ``i < j`` with a non-zero coupling, in row-major order."""
        rows, cols = np.nonzero(self.quadratic)
        return [(int(i), int(j)) for i, j in zip(rows, cols)]


class _Builder:
    """Accumulates linear, pairwise and constant terms into a `Qubo`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.linear = np.zeros(n)
        self.quadratic = np.zeros((n, n))
        self.offset = 0.0

    def add(self, i: int, j: int, w: float) -> None:
        if i == j:
            self.linear[i] += w
        else:
            self.quadratic[min(i, j), max(i, j)] += w

    def exactly_one(self, variables: Sequence[int], weight: float) -> None:
        """``weight · (1 - Σ x)²`` = ``weight · (1 - Σ x_i + 2 Σ_{i<j} x_i x_j)`` since ``x² = x``."""
        self.offset += weight
        for a, i in enumerate(variables):
            self.linear[i] -= weight
            for j in variables[a + 1:]:
                self.add(i, j, 2.0 * weight)

    def build(self) -> Qubo:
        return Qubo(self.n, self.linear, self.quadratic, float(self.offset))


def qubo_from_terms(n: int, terms: Iterable[Sequence[float]], offset: float = 0.0) -> Qubo:
    """A `Qubo` from ``(i, j, w)`` terms as a QuboProblem carries them (repeated terms add up)."""
    builder = _Builder(n)
    for i, j, w in terms:
        builder.add(int(i), int(j), float(w))
    builder.offset = float(offset)
    return builder.build()


def to_ising(qubo: Qubo) -> tuple[np.ndarray, np.ndarray, float]:
    """``(h, J, c)`` with ``E = c + Σ h_i z_i + Σ_{i<j} J_ij z_i z_j`` for ``z_i = 1 - 2 x_i``.

    ``J`` is strictly upper triangular like ``qubo.quadratic``.
    """
    a, b = qubo.linear, qubo.quadratic
    touching = b.sum(axis=0) + b.sum(axis=1)
    h = -a / 2.0 - touching / 4.0
    J = b / 4.0
    c = qubo.offset + a.sum() / 2.0 + b.sum() / 4.0
    return h, J, float(c)


def from_ising(h: np.ndarray, J: np.ndarray, c: float = 0.0) -> Qubo:
    """The inverse of `to_ising`: ``J`` may be any square matrix; it is folded to upper triangular."""
    h = np.asarray(h, dtype=np.float64)
    J = np.asarray(J, dtype=np.float64)
    upper = np.triu(J, 1) + np.tril(J, -1).T
    touching = upper.sum(axis=0) + upper.sum(axis=1)
    linear = -2.0 * h - 2.0 * touching
    offset = c + h.sum() + upper.sum() + float(np.trace(J) if J.size else 0.0)
    return Qubo(len(h), linear, 4.0 * upper, float(offset))


def _as_qubo(qubo: Qubo | Mapping[tuple[int, int], float] | Iterable[Sequence[float]], n: int | None) -> Qubo:
    if isinstance(qubo, Qubo):
        if n is not None and n != qubo.n:
            raise ValueError(f"the QUBO has {qubo.n} variables, not {n}")
        return qubo
    if n is None:
        raise ValueError("n is needed when the QUBO is given as terms")
    if isinstance(qubo, Mapping):
        return qubo_from_terms(n, ((i, j, w) for (i, j), w in qubo.items()))
    return qubo_from_terms(n, qubo)


def energy_vector(qubo: Qubo | Mapping[tuple[int, int], float] | Iterable[Sequence[float]],
                  n: int | None = None, *, chunk_bits: int = 16) -> np.ndarray:
    """All ``2**n`` energies, entry k for ``x_i = (k >> i) & 1`` (qiskit's little-endian order).

    Computed in chunks of ``2**chunk_bits`` states so the 0/1 matrix stays a few MB at 20+ variables.
    """
    q = _as_qubo(qubo, n)
    total = 1 << q.n
    size = min(total, 1 << chunk_bits)
    shifts = np.arange(q.n, dtype=np.int64)
    out = np.empty(total)
    for start in range(0, total, size):
        ks = np.arange(start, start + size, dtype=np.int64)
        out[start:start + size] = q.energies((ks[:, None] >> shifts) & 1)
    return out


def indices_to_bits(indices: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    """``(k, n)`` uint8 bit rows for basis-state indices, ``row[i] = (index >> i) & 1``."""
    ks = np.asarray(indices, dtype=np.int64)
    return ((ks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.uint8)


def bits_to_index(bits: Sequence[int] | np.ndarray) -> int:
    """The basis-state index of one bit vector (inverse of `indices_to_bits`)."""
    return int(sum(int(b) << i for i, b in enumerate(bits)))


@dataclass(frozen=True)
class Decoded:
    """One sample turned into an answer.

    ``raw_feasible``: the bits satisfied every constraint as sampled. ``feasible``: the answer after
    repair does (for tsp always; for assignment unless repair could not fit the loads). ``cost`` is the
    problem's objective of ``result`` (QUBO energy, tour length, assignment cost).
    """

    result: dict[str, Any]
    cost: float
    feasible: bool
    raw_feasible: bool


class QuboEncoding:
    """The identity: a QUBO problem's variables are the qubits."""

    kind = "qubo"

    def __init__(self, n: int, terms: Iterable[Sequence[float]]) -> None:
        self.qubo = qubo_from_terms(n, terms)
        self.penalty = 0.0

    def decode(self, bits: Sequence[int] | np.ndarray) -> Decoded:
        x = [int(b) for b in bits]
        return Decoded({"bits": x}, self.qubo.energy(x), True, True)


class TspEncoding:
    """City 0 fixed at position 0; ``x[c, p]`` = city c (1..n-1) at position p (1..n-1): (n-1)² qubits.

    Variable ``(c - 1)·(n - 1) + (p - 1)``. Energy = tour length + ``A·Σ(1 - Σ x)²`` over every city's row
    and every position's column, with ``A = (n + 1)·max_d / 2``. Why that is safe: an infeasible bit vector
    breaks at least two constraints (rows and columns count the same ones, so one broken row forces a
    broken column), so its penalty is ≥ 2A = (n + 1)·max_d > n·max_d ≥ the longest tour, and distances
    are non-negative; the QUBO's minimum is therefore always a feasible, optimal tour. A larger A would
    only flatten the cost landscape QAOA has to resolve.
    """

    kind = "tsp"

    def __init__(self, distances: Sequence[Sequence[float]]) -> None:
        d = np.asarray(distances, dtype=np.float64)
        self.distances = d
        self.size = n = len(d)
        self.m = m = n - 1
        off_diagonal = d[~np.eye(n, dtype=bool)]
        max_d = float(off_diagonal.max()) if off_diagonal.size else 0.0
        self.penalty = (n + 1) * max_d / 2.0 if max_d > 0 else 1.0
        builder = _Builder(m * m)
        for c in range(1, n):
            builder.add(self.var(c, 1), self.var(c, 1), d[0, c])
            builder.add(self.var(c, m), self.var(c, m), d[c, 0])
        for p in range(1, m):
            for c in range(1, n):
                for c2 in range(1, n):
                    if c != c2:
                        builder.add(self.var(c, p), self.var(c2, p + 1), d[c, c2])
        for c in range(1, n):
            builder.exactly_one([self.var(c, p) for p in range(1, n)], self.penalty)
        for p in range(1, n):
            builder.exactly_one([self.var(c, p) for c in range(1, n)], self.penalty)
        self.qubo = builder.build()

    def var(self, city: int, position: int) -> int:
        return (city - 1) * self.m + (position - 1)

    def tour_cost(self, tour: Sequence[int]) -> float:
        return float(sum(self.distances[a, b] for a, b in zip(tour, [*tour[1:], tour[0]])))

    def decode(self, bits: Sequence[int] | np.ndarray) -> Decoded:
        """Always a valid tour from 0: the sample's permutation, or a repair of it.

        Repair keeps the sample's placements that do not clash (most certain first: bits whose row and
        column hold the fewest ones, then by index), reads the kept cities in position order, and inserts
        each missing city where it lengthens the tour least (cheapest insertion, never before city 0).
        """
        m = self.m
        grid = np.asarray(bits, dtype=np.int64).reshape(m, m)
        rows, cols = grid.sum(axis=1), grid.sum(axis=0)
        if np.all(rows == 1) and np.all(cols == 1):
            tour = [0, *(int(np.argmax(grid[:, p])) + 1 for p in range(m))]
            return Decoded({"tour": tour}, self.tour_cost(tour), True, True)
        ones = sorted(np.flatnonzero(grid.ravel()), key=lambda f: (rows[f // m] + cols[f % m], f))
        city_at: dict[int, int] = {}
        placed: set[int] = set()
        for flat in ones:
            c, p = divmod(int(flat), m)
            if c not in placed and p not in city_at:
                city_at[p] = c + 1
                placed.add(c)
        tour = [0, *(city_at[p] for p in sorted(city_at))]
        self._insert_missing(tour)
        return Decoded({"tour": tour}, self.tour_cost(tour), True, False)

    def _insert_missing(self, tour: list[int]) -> None:
        d = self.distances
        missing = [c for c in range(1, self.size) if c not in set(tour)]
        while missing:
            best: tuple[float, int, int] | None = None
            for c in missing:
                for k in range(1, len(tour) + 1):
                    a, b = tour[k - 1], tour[k % len(tour)]
                    delta = d[a, c] + d[c, b] - d[a, b]
                    if best is None or delta < best[0]:
                        best = (delta, c, k)
            assert best is not None
            _, c, k = best
            tour.insert(k, c)
            missing.remove(c)


class AssignmentEncoding:
    """One-hot ``x[l, t]`` (load l on truck t), variable ``l·trucks + t``: loads × trucks qubits.

    Energy = cost + ``A·Σ_l (1 - Σ_t x[l, t])²`` + A for every placement that cannot fit: a load heavier
    than the truck (linear) and two loads that together overload a truck (pairwise). ``A = 2·max_cost``:
    a load on no truck, or on two, is always worse than the same load on any one truck.

    Capacity is otherwise not in the QUBO: an exact capacity constraint needs slack qubits (log₂ of each
    capacity per truck), which this lane cannot afford. Three or more loads that only together overload a
    truck are left to the repair in `decode`, and such samples do not count as raw-feasible.
    """

    kind = "assignment"

    def __init__(self, costs: Sequence[Sequence[float]], weights: Sequence[float],
                 capacities: Sequence[float]) -> None:
        self.costs = c = np.asarray(costs, dtype=np.float64)
        self.weights = w = np.asarray(weights, dtype=np.float64)
        self.capacities = cap = np.asarray(capacities, dtype=np.float64)
        self.loads, self.trucks = loads, trucks = c.shape
        max_cost = float(c.max()) if c.size else 0.0
        self.penalty = 2.0 * max_cost if max_cost > 0 else 1.0
        builder = _Builder(loads * trucks)
        for l in range(loads):
            for t in range(trucks):
                builder.add(self.var(l, t), self.var(l, t), c[l, t])
                if _exceeds(w[l], cap[t]):
                    builder.add(self.var(l, t), self.var(l, t), self.penalty)
            builder.exactly_one([self.var(l, t) for t in range(trucks)], self.penalty)
        for t in range(trucks):
            for l in range(loads):
                for l2 in range(l + 1, loads):
                    if _exceeds(w[l] + w[l2], cap[t]):
                        builder.add(self.var(l, t), self.var(l2, t), self.penalty)
        self.qubo = builder.build()

    def var(self, load: int, truck: int) -> int:
        return load * self.trucks + truck

    def _overloaded(self, used: np.ndarray) -> list[int]:
        return [t for t in range(self.trucks) if _exceeds(float(used[t]), float(self.capacities[t]))]

    def decode(self, bits: Sequence[int] | np.ndarray) -> Decoded:
        """One truck per load, then moves off overloaded trucks until every truck fits (if possible).

        A load with several trucks set keeps the cheapest of them; a load with none goes, heaviest
        first, to the cheapest truck with room left (the cheapest truck if none has room). Then, while a
        truck is overloaded, the move of one of its loads to a truck with room that raises the cost least
        is made; each move strictly lowers the total overload, so this ends. ``feasible`` is False when no
        such move is left and a truck is still overloaded.
        """
        grid = np.asarray(bits, dtype=np.int64).reshape(self.loads, self.trucks)
        c, w, cap = self.costs, self.weights, self.capacities
        assignment = [-1] * self.loads
        for l in range(self.loads):
            chosen = np.flatnonzero(grid[l])
            if chosen.size:
                assignment[l] = int(chosen[np.argmin(c[l, chosen])])
        used = np.zeros(self.trucks)
        for l, t in enumerate(assignment):
            if t >= 0:
                used[t] += w[l]
        one_hot = bool(np.all(grid.sum(axis=1) == 1))
        raw_feasible = one_hot and not self._overloaded(used)
        for l in sorted((l for l in range(self.loads) if assignment[l] < 0), key=lambda l: (-w[l], l)):
            room = [t for t in range(self.trucks) if not _exceeds(used[t] + w[l], cap[t])]
            options = room or list(range(self.trucks))
            t = min(options, key=lambda t: (c[l, t], t))
            assignment[l] = t
            used[t] += w[l]
        self._repair_capacity(assignment, used)
        feasible = not self._overloaded(used)
        cost = float(sum(c[l, t] for l, t in enumerate(assignment)))
        return Decoded({"assignment": assignment}, cost, feasible, raw_feasible)

    def _repair_capacity(self, assignment: list[int], used: np.ndarray) -> None:
        c, w, cap = self.costs, self.weights, self.capacities
        while True:
            best: tuple[float, int, int] | None = None
            for src in self._overloaded(used):
                for l in (l for l, t in enumerate(assignment) if t == src):
                    for dst in range(self.trucks):
                        if dst != src and w[l] > 0 and not _exceeds(used[dst] + w[l], cap[dst]):
                            delta = c[l, dst] - c[l, src]
                            if best is None or delta < best[0]:
                                best = (delta, l, dst)
            if best is None:
                return
            _, l, dst = best
            used[assignment[l]] -= w[l]
            used[dst] += w[l]
            assignment[l] = dst


def _exceeds(value: float, bound: float) -> bool:
    return value > bound + _EPS * max(1.0, abs(bound))


Encoding = QuboEncoding | TspEncoding | AssignmentEncoding


def encode(problem: Any) -> Encoding:
    """The encoding of a validated qubo, tsp or assignment problem (see `solvers.problems`)."""
    if problem.kind == "qubo":
        return QuboEncoding(problem.n, problem.terms)
    if problem.kind == "tsp":
        return TspEncoding(problem.distance_matrix())
    if problem.kind == "assignment":
        return AssignmentEncoding(problem.costs, problem.weights, problem.capacities)
    raise ValueError(f"no QUBO encoding for '{problem.kind}'")


def ising_scale(h: np.ndarray, J: np.ndarray) -> float:
    """The standard deviation of an Ising energy over all bit vectors: ``sqrt(Σ h² + Σ J²)``.

    Pauli-Z products are orthonormal under the uniform distribution, so this is exact; dividing the
    cost Hamiltonian by it puts good QAOA angles γ in the same range for every problem's units.
    """
    largest = max(float(np.max(np.abs(h), initial=0.0)), float(np.max(np.abs(J), initial=0.0)))
    if largest == 0.0:
        return 0.0
    # divided by the largest weight first: squaring a 1e200 weight overflows, and 1e-200 underflows
    return largest * math.sqrt(float(np.sum((h / largest) ** 2) + np.sum((J / largest) ** 2)))
