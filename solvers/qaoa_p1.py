"""QAOA angles past the statevector: the one-layer energy in closed form, optimised as the statevector is.

At one layer the QAOA expectation of an Ising Hamiltonian ``H = Σ h_u Z_u + Σ_{u<v} J_uv Z_u Z_v`` has a
closed form in the angles (Ozaeta, van Dam & McMahon, "Expectation values from the single-layer quantum
approximate optimization algorithm on Ising problems", Quantum Sci. Technol. 7, 045036 (2022),
arXiv:2012.03421, Theorem 1). With ``c(x) = cos 2γx``, for the state ``e^{-iβΣX} e^{-iγH} |+⟩^n``:

    ⟨Z_u⟩ = sin 2β · sin 2γh_u · Π_{w≠u} c(J_uw)
    ⟨Z_u Z_v⟩ = ½ sin 4β · sin 2γJ_uv · [cos 2γh_u Π_{w≠u,v} c(J_uw) + cos 2γh_v Π_{w≠u,v} c(J_vw)]
              + ½ sin² 2β · [cos 2γ(h_u−h_v) Π_{w≠u,v} c(J_uw − J_vw) − cos 2γ(h_u+h_v) Π_{w≠u,v} c(J_uw + J_vw)]

(signs for `solvers.qaoa.qaoa_circuit`'s conventions; `tests/unit/test_qaoa_p1.py` checks every term
against that circuit's statevector). One evaluation costs O(couplings × n) instead of O(2**n), so the
qpu lane still *optimises* its angles — the same grid and COBYLA as on the statevector — for problems far
beyond the statevector's 20 qubits, rather than using fixed angles (published fixed-angle tables are
for unweighted regular MaxCut, e.g. Wurtz & Lykov, PRA 104, 052419 (2021); a routing encoding has fields
and mixed weights, so those angles do not transfer to it). What is lost past the statevector: all 2**n
energies, so no ground-state probability in the result.
"""

from __future__ import annotations

import math

import numpy as np

from solvers.capability import qaoa_closed_form_seconds
from solvers.encodings import Encoding, ising_scale, to_ising
from solvers.qaoa import AngleSearch, Evaluator, search_angles

METHOD = "closed-form one-layer expectation (Ozaeta, van Dam & McMahon 2022)"
class ClosedFormExpectation:
    """The one-layer QAOA energy of ``c + Σ h Z + Σ J ZZ`` at angles ``[γ, β]`` of `qaoa_circuit(h, J, 1,
    scale)` (whose cost unitary is ``exp(-iγH/scale)``), in the problem's units."""

    def __init__(self, h: np.ndarray, J: np.ndarray, offset: float, scale: float) -> None:
        self.h = np.asarray(h, dtype=np.float64)
        upper = np.triu(np.asarray(J, dtype=np.float64), 1)
        self.offset = float(offset)
        self.scale = scale or 1.0
        self.us, self.vs = np.nonzero(upper)
        self.weights = upper[self.us, self.vs]
        symmetric = (upper + upper.T) / self.scale
        self.field = self.h / self.scale
        self.rows_u = symmetric[self.us]
        self.rows_v = symmetric[self.vs]
        self.coupling = symmetric[self.us, self.vs]
        # a mask that keeps w ≠ u, v out of each coupling's products
        self.others = np.ones_like(self.rows_u, dtype=bool)
        self.others[np.arange(len(self.us)), self.us] = False
        self.others[np.arange(len(self.us)), self.vs] = False
        self.symmetric = symmetric

    def correlations(self, gamma: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """``⟨Z_u⟩`` for every qubit and ``⟨Z_u Z_v⟩`` for every coupling (in ``us, vs`` order)."""
        g2 = 2.0 * gamma
        cos_all = np.cos(g2 * self.symmetric)
        single = math.sin(2.0 * beta) * np.sin(g2 * self.field) * np.prod(cos_all, axis=1)
        if not len(self.us):
            return single, np.zeros(0)

        def product(values: np.ndarray) -> np.ndarray:
            return np.prod(np.where(self.others, np.cos(g2 * values), 1.0), axis=1)

        fu, fv = self.field[self.us], self.field[self.vs]
        first = 0.5 * math.sin(4.0 * beta) * np.sin(g2 * self.coupling) * (
            np.cos(g2 * fu) * product(self.rows_u) + np.cos(g2 * fv) * product(self.rows_v))
        second = 0.5 * math.sin(2.0 * beta) ** 2 * (
            np.cos(g2 * (fu - fv)) * product(self.rows_u - self.rows_v)
            - np.cos(g2 * (fu + fv)) * product(self.rows_u + self.rows_v))
        return single, first + second

    def energy(self, gamma: float, beta: float) -> float:
        single, pairs = self.correlations(gamma, beta)
        return float(self.offset + self.h @ single + self.weights @ pairs)

    def __call__(self, angles: np.ndarray) -> tuple[float, None]:
        return self.energy(float(angles[0]), float(angles[1])), None


def optimise_angles_closed_form(encoding: Encoding, budget: int, deadline: float,
                                stop_after: int | None = None) -> AngleSearch:
    """One-layer angles for ``encoding`` by `search_angles` on the closed-form energy, within ``budget``
    evaluations and before ``deadline`` (``time.perf_counter``).

    Raises TimeoutError when not one evaluation fits.
    """
    h, J, offset = to_ising(encoding.qubo)
    scale = ising_scale(h, J)
    expectation = ClosedFormExpectation(h, J, offset, scale)
    evaluator = Evaluator(expectation, offset, scale or 1.0, budget, deadline,
                          qaoa_closed_form_seconds(len(h), len(expectation.us)), stop_after)
    stages = search_angles(evaluator, 1, scale)
    if evaluator.best_angles is None:
        raise TimeoutError(f"QAOA on {len(h)} qubits: not one energy evaluation fitted before the deadline")
    return AngleSearch(h=h, J=J, scale=scale, reps=1, angles=evaluator.best_angles,
                       expected_energy=evaluator.best_energy, uniform_mean_energy=offset,
                       evaluations=evaluator.evaluations, budget=budget, stages=stages,
                       stopped_by=evaluator.stopped_by, method=METHOD)
