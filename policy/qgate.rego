# qgate's default policy: who may send what where, and at what cost tier.
#
# Evaluated in-process (regopy) once per distinct input; the entry point is data.qgate.policy.decision.
# The input (policy/engine.py, policy_input):
#   {"tenant", "scopes": [...], "request": {"solver", "cost_tier", "metadata": {...}},
#    "lanes": {"qpu": {"cost_usd", "provider", "region"}, "sim": {...}, "heuristic": {...}},
#    "config": {"standard_tier_max_usd"}}
# The data (policy/data.json, under data.qgate): defaults and tenants (lanes, providers,
# standard_tier_max_usd, rates, qpu_spend) and residency rules.
#
# With the shipped data this reproduces the rules that were code before it (tests/unit/test_policy_diff.py):
# a lane needs its solver:<lane> scope, a named lane needs its scope (403), premium needs tier:premium
# (403), and a standard-tier job skips a lane whose estimate is above the standard tier's ceiling.
#
# Strings are built with concat, and lanes come as an array: in rego-cpp 1.x sprintf quotes some strings it
# is given for %s, and comprehensions over the lanes mis-evaluate the lane checks: the three lanes are
# spelled out.
#
# Every rule is a function of its input and configuration (`decide(inp, conf)`), so that the tests call it
# with values of their own: regopy 1.5.2 crashes on `with input as`.
package qgate.policy

import rego.v1

# data.qgate holds this package too: read its parts by their own paths, never data.qgate as a whole.
default tenants := {}

tenants := data.qgate.tenants

default defaults := {}

defaults := data.qgate.defaults

default residency := []

residency := data.qgate.residency

config := {"tenants": tenants, "defaults": defaults, "residency": residency}

decision := decide(input, config)

decide(inp, conf) := {
	"refusal": refusal(inp),
	"access": {"qpu": access(inp, conf, "qpu", inp.lanes.qpu), "sim": access(inp, conf, "sim", inp.lanes.sim),
	           "heuristic": access(inp, conf, "heuristic", inp.lanes.heuristic)},
	"budget": {"qpu": cost_denial(inp, conf, inp.lanes.qpu), "sim": cost_denial(inp, conf, inp.lanes.sim),
	           "heuristic": cost_denial(inp, conf, inp.lanes.heuristic)},
}

# A tenant's own setting, else the defaults', else the fallback.
setting(inp, conf, name, fallback) := object.get(
	object.get(conf.tenants, inp.tenant, {}), name,
	object.get(conf.defaults, name, fallback),
)

has_scope(inp, scope) if scope in inp.scopes

# -- refusals of the whole request (403) ------------------------------------------------------------

refusal(inp) := concat("", ["missing scope: solver:", inp.request.solver]) if {
	inp.request.solver != "auto"
	not has_scope(inp, concat("", ["solver:", inp.request.solver]))
} else := "missing scope: tier:premium" if {
	inp.request.cost_tier == "premium"
	not has_scope(inp, "tier:premium")
} else := null

# -- who may use a lane (checked before the lane's own capability and health) ----------------------

access(inp, conf, lane, info) := array.concat(
	array.concat(scope_denial(inp, lane), tenant_lane_denial(inp, conf, lane)),
	array.concat(provider_denial(inp, conf, info), residency_denial(inp, conf, lane, info)),
)

scope_denial(inp, lane) := [concat("", ["scope: the client lacks solver:", lane])] if {
	not has_scope(inp, concat("", ["solver:", lane]))
} else := []

# Predicates answer true or false (never undefined): rego-cpp 1.x mis-evaluates `not f(x)` for some
# functions of objects, so denials test `f(x) == false`.
lane_allowed(la_inp, la_conf, la_lane) := true if {
	setting(la_inp, la_conf, "lanes", "*") == "*"
} else := true if {
	la_lane in setting(la_inp, la_conf, "lanes", "*")
} else := false

tenant_lane_denial(inp, conf, lane) := [concat("", ["tenant: ", inp.tenant, " may not use the ", lane, " lane"])] if {
	lane_allowed(inp, conf, lane) == false
} else := []

provider_denial(inp, conf, info) := [concat("", ["provider: ", inp.tenant, " may not use provider ", info.provider])] if {
	info.provider != null
	allowed := setting(inp, conf, "providers", "*")
	allowed != "*"
	provider_allowed(info.provider, allowed) == false
} else := []

provider_allowed(provider, allowed) := true if provider in allowed

else := false

region_allowed(region, regions) := true if region in regions

else := false

# A residency rule applies when every metadata field it names has the value it names.
rule_applies(inp, rule) if {
	every key, value in rule.metadata {
		object.get(object.get(inp.request, "metadata", {}), key, null) == value
	}
}

residency_denial(inp, conf, lane, info) := [concat("", [
	"residency: ", rule.name, " data stays in ", concat("/", rule.regions), "; the ", lane, " lane runs in ", info.region,
])] if {
	some rule in conf.residency
	rule_applies(inp, rule)
	region_allowed(info.region, rule.regions) == false
} else := []

# -- what a lane may cost (checked after the lane's capability and health) -------------------------

cost_denial(inp, conf, info) := [concat("", [
	"cost tier: $", sprintf("%.2f", [info.cost_usd]), " estimated exceeds the standard tier's $", sprintf("%.2f", [ceiling]),
])] if {
	inp.request.cost_tier == "standard"
	ceiling := setting(inp, conf, "standard_tier_max_usd", inp.config.standard_tier_max_usd)
	info.cost_usd > ceiling
} else := []
