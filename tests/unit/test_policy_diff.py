"""The shipped policy decides exactly as the code it replaced: every scope set × tier × requested lane ×
lane cost × ceiling × health, planned by the old rules and by the policy (reasons equal once the policy's
``policy: `` prefix is taken off), and the request-level 403s of api/solve.py's old scope check."""

from __future__ import annotations

import itertools

import pytest

from policy.engine import DEFAULT_DATA, DEFAULT_POLICY, PolicyBundle, run_tests
from routing.plan import LaneStatus, plan_lanes
from routing.policy import policy_input
from solvers.base import LaneLimits
from solvers.problems import parse_problem

SCOPES = ["solver:qpu", "solver:sim", "solver:heuristic", "tier:premium"]
SCOPE_SETS = [frozenset(c) for n in range(len(SCOPES) + 1) for c in itertools.combinations(SCOPES, n)]
CIRCUIT = parse_problem({"kind": "circuit", "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
                                                    'h q[0]; measure q -> c;', "shots": 100})
TSP = parse_problem({"kind": "tsp", "distances": [[0, 1, 2], [1, 0, 1], [2, 1, 0]]})
STATUSES = [{lane: LaneStatus(True, LaneLimits(max_qubits=24)) for lane in ("qpu", "sim", "heuristic")},
            {"qpu": LaneStatus(False), "sim": LaneStatus(True, LaneLimits(max_qubits=24)),
             "heuristic": LaneStatus(True)}]


@pytest.fixture(scope="module")
def bundle() -> PolicyBundle:
    return PolicyBundle.load(DEFAULT_POLICY, DEFAULT_DATA)


def _old_refusal(solver: str, tier: str, scopes: frozenset[str]) -> str | None:
    """api/solve.py's _check_lane_scopes before the policy engine."""
    if solver != "auto" and f"solver:{solver}" not in scopes:
        return f"missing scope: solver:{solver}"
    if tier == "premium" and "tier:premium" not in scopes:
        return "missing scope: tier:premium"
    return None


def test_default_policy_plans_exactly_as_the_old_rules(bundle: PolicyBundle) -> None:
    cases = 0
    for scopes, tier, solver, qpu_cost, ceiling, status, problem, region in itertools.product(
            SCOPE_SETS, ("standard", "premium"), ("auto", "qpu", "sim", "heuristic"), (0.0, 0.004, 1.0, 4.105),
            (0.0, 1.0, 5.0), STATUSES, (CIRCUIT, TSP), (None, "us", "eu")):
        costs = {"qpu": qpu_cost, "sim": 0.0, "heuristic": 0.0}
        old = plan_lanes(problem, solver, scopes, status, cost_tier=tier, lane_cost_usd=costs,
                         standard_tier_max_usd=ceiling)
        decision = bundle.evaluate(policy_input(
            tenant="acme", scopes=scopes, solver=solver, cost_tier=tier, metadata={"region": region} if region else {},
            lane_cost_usd=costs, qpu_provider="emulated", qpu_region="local", standard_tier_max_usd=ceiling))
        new = plan_lanes(problem, solver, scopes, status, policy=decision)
        assert [(s.lane, s.action, s.reason.removeprefix("policy: ")) for s in new] == \
               [(s.lane, s.action, s.reason) for s in old], (scopes, tier, solver, qpu_cost, ceiling)
        assert decision.refusal == _old_refusal(solver, tier, scopes)
        cases += 1
    assert cases == len(SCOPE_SETS) * 2 * 4 * 4 * 3 * 2 * 2 * 3


def test_policy_reasons_are_marked(bundle: PolicyBundle) -> None:
    decision = bundle.evaluate(policy_input(
        tenant="acme", scopes=frozenset({"solver:sim"}), solver="auto", cost_tier="standard", metadata={},
        lane_cost_usd={}, qpu_provider="emulated", qpu_region="local", standard_tier_max_usd=0.0))
    plan = plan_lanes(TSP, "auto", frozenset(), STATUSES[0], policy=decision)
    assert plan[0].reason == "policy: scope: the client lacks solver:qpu"


def test_residency_keeps_eu_jobs_off_a_us_provider(bundle: PolicyBundle) -> None:
    scopes = frozenset({"solver:qpu", "solver:sim", "solver:heuristic"})
    for region, qpu_action in (("eu", "skip"), ("us", "try"), (None, "try")):
        decision = bundle.evaluate(policy_input(
            tenant="acme", scopes=scopes, solver="auto", cost_tier="standard",
            metadata={"region": region} if region else {}, lane_cost_usd={}, qpu_provider="ibm", qpu_region="us",
            standard_tier_max_usd=0.0))
        plan = plan_lanes(CIRCUIT, "auto", scopes, STATUSES[0], policy=decision)
        assert plan[0].action == qpu_action
        assert plan[1].action == "try"
    assert plan_lanes(CIRCUIT, "auto", scopes, STATUSES[0], policy=bundle.evaluate(policy_input(
        tenant="acme", scopes=scopes, solver="auto", cost_tier="standard", metadata={"region": "eu"},
        lane_cost_usd={}, qpu_provider="ibm", qpu_region="us", standard_tier_max_usd=0.0)))[0].reason == \
        "policy: residency: EU data stays in eu/local; the qpu lane runs in us"


def test_a_policy_that_denies_a_lane(tmp_path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"qgate": {"tenants": {"trial": {"lanes": ["heuristic"]}}}}')
    bundle = PolicyBundle.load(DEFAULT_POLICY, data)
    scopes = frozenset({"solver:qpu", "solver:sim", "solver:heuristic"})
    for tenant, actions in (("trial", ["skip", "skip", "try"]), ("acme", ["try", "try", "try"])):
        decision = bundle.evaluate(policy_input(
            tenant=tenant, scopes=scopes, solver="auto", cost_tier="standard", metadata={},
            lane_cost_usd={}, qpu_provider="emulated", qpu_region="local", standard_tier_max_usd=0.0))
        plan = plan_lanes(TSP, "auto", scopes, STATUSES[0], policy=decision)
        assert [s.action for s in plan] == actions
    assert plan_lanes(TSP, "auto", scopes, STATUSES[0], policy=bundle.evaluate(policy_input(
        tenant="trial", scopes=scopes, solver="auto", cost_tier="standard", metadata={}, lane_cost_usd={},
        qpu_provider="emulated", qpu_region="local", standard_tier_max_usd=0.0)))[1].reason == \
        "policy: tenant: trial may not use the sim lane"


def test_shipped_rego_tests_pass() -> None:
    results = run_tests(DEFAULT_POLICY, DEFAULT_DATA, [DEFAULT_POLICY.with_name("qgate_test.rego")])
    assert len(results) >= 7 and all(passed for _, passed in results), results


@pytest.mark.parametrize("text", ["package qgate.policy\nimport rego.v1\ndecision := {", "package other\nx := 1\n", ""])
def test_a_broken_policy_is_refused(tmp_path, text: str) -> None:
    from policy.engine import PolicyError

    bad = tmp_path / "bad.rego"
    bad.write_text(text)
    with pytest.raises(PolicyError):
        PolicyBundle.load(bad, DEFAULT_DATA)
