"""The failed-login throttle: failures counted per client id and per source address, on the moving window.

A login first asks whether either subject has used up its failures (no spending, two window reads); only
if not is the secret checked (a scrypt), and only a failure is counted. Successes are never counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratelimit.limiter import Decision, Limit, Limiter
from ratelimit.policy import Rate

NAMESPACE = "loginfail"


@dataclass(frozen=True)
class LoginFailureRules:
    window_s: int = 60
    per_client: int = 10
    per_address: int = 30


def login_limits(rules: LoginFailureRules, client_id: str, address: str) -> list[Limit]:
    """The two failure budgets a login spends from when it fails."""
    return [Limit(NAMESPACE, "client", client_id, Rate(rules.per_client, rules.window_s)),
            Limit(NAMESPACE, "addr", address, Rate(rules.per_address, rules.window_s))]


class LoginThrottle:
    def __init__(self, limiter: Limiter, rules: LoginFailureRules) -> None:
        self.limiter, self.rules = limiter, rules

    def refusal(self, client_id: str, address: str) -> Decision | None:
        """The refusal if this client id or address has no failures left in the window, else None."""
        decision = self.limiter.check(login_limits(self.rules, client_id, address))
        return None if decision.allowed else decision

    def count_failure(self, client_id: str, address: str) -> None:
        self.limiter.spend(login_limits(self.rules, client_id, address))
