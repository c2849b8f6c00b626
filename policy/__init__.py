"""Policy as code: lane, tier and residency decisions from a Rego policy evaluated in-process (regopy)."""
