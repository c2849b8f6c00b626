# Rego tests of the default policy (they call policy.decide: `with input as` crashes regopy 1.5.2): `qgate policy check policy/qgate.rego --data policy/data.json` runs them.
package qgate.policy_test

import rego.v1

import data.qgate.policy

lanes := {
	"qpu": {"cost_usd": 4.1, "provider": "ibm", "region": "us"},
	"sim": {"cost_usd": 0, "provider": null, "region": "local"},
	"heuristic": {"cost_usd": 0, "provider": null, "region": "local"},
}

# The shipped configuration (data.qgate as the policy reads it), which each test may change.
cfg := policy.config

base := {
	"tenant": "acme", "scopes": ["quantum:solve", "solver:qpu", "solver:sim", "solver:heuristic"],
	"request": {"solver": "auto", "cost_tier": "standard", "metadata": {}},
	"lanes": lanes, "config": {"standard_tier_max_usd": 5},
}

test_every_scoped_lane_is_open if {
	d := policy.decide(base, cfg)
	d.refusal == null
	d.access == {"qpu": [], "sim": [], "heuristic": []}
	d.budget == {"qpu": [], "sim": [], "heuristic": []}
}

test_a_lane_without_its_scope_is_denied if {
	d := policy.decide(object.union(base, {"scopes": ["solver:sim"]}), cfg)
	d.access.qpu == ["scope: the client lacks solver:qpu"]
	d.access.sim == []
}

test_naming_a_lane_needs_its_scope if {
	d := policy.decide(object.union(base, {"scopes": ["solver:sim"], "request": {"solver": "qpu", "cost_tier": "standard"}}), cfg)
	d.refusal == "missing scope: solver:qpu"
}

test_premium_needs_its_scope if {
	d := policy.decide(object.union(base, {"request": {"solver": "auto", "cost_tier": "premium"}}), cfg)
	d.refusal == "missing scope: tier:premium"
}

test_standard_tier_ceiling if {
	d := policy.decide(object.union(base, {"config": {"standard_tier_max_usd": 1}}), cfg)
	d.budget.qpu == ["cost tier: $4.10 estimated exceeds the standard tier's $1.00"]
	premium := object.union(base, {"scopes": array.concat(base.scopes, ["tier:premium"]), "request": {"solver": "auto", "cost_tier": "premium"}, "config": {"standard_tier_max_usd": 1}})
	e := policy.decide(premium, cfg)
	e.budget.qpu == []
}

test_eu_jobs_stay_off_a_us_provider if {
	d := policy.decide(object.union(base, {"request": {"solver": "auto", "cost_tier": "standard", "metadata": {"region": "eu"}}}), cfg)
	d.access.qpu == ["residency: EU data stays in eu/local; the qpu lane runs in us"]
	d.access.sim == []
}

test_tenant_lanes_and_providers if {
	tenants := {"acme": {"lanes": ["sim", "heuristic"], "providers": ["braket"]}}
	d := policy.decide(base, object.union(cfg, {"tenants": tenants}))
	d.access.qpu == ["tenant: acme may not use the qpu lane", "provider: acme may not use provider ibm"]
	d.access.sim == []
}
