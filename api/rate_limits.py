"""Rate limits at the edge: a request's limits are spent once it is authenticated, a refusal is a JSON 429,
and every limited answer carries the RateLimit headers. The logic is in ``ratelimit``.

Redis unavailable: the limiter fails closed, with a JSON 503 and ``Retry-After``. Every limited route but
a few audit reads needs that Redis to do its work anyway, and a limiter that opened whenever its store
was unreachable would hand anyone able to trouble Redis an unlimited gateway.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import g

from api.errors import ApiError
from api.services import services
from api.tokens import Principal
from ratelimit.limiter import Decision, LimiterUnavailable

log = structlog.get_logger("qgate.ratelimit")
UNAVAILABLE_RETRY_S = "5"


def unavailable() -> ApiError:
    return ApiError(503, "rate limiter unavailable; retry later", headers={"Retry-After": UNAVAILABLE_RETRY_S})


def enforce(request_class: str, principal: Principal) -> None:
    """Spend one ``request_class`` request of the principal's client and tenant, or answer 429."""
    svc = services()
    policy = svc.rate_policy
    if policy is None:
        return
    try:
        decision = svc.limiter.acquire(policy.limits(request_class, principal.tenant, principal.client_id))
    except LimiterUnavailable as exc:
        log.warning("rate_limiter_unavailable", error=str(exc))
        raise unavailable() from None
    g.rate_limit = decision
    if not decision.allowed:
        log.info("rate_limited", limit=decision.limit.describe(), retry_after_s=decision.retry_after_s)
        raise refusal(decision, f"rate limit: {decision.limit.describe()}")


def refusal(decision: Decision, message: str) -> ApiError:
    return ApiError(429, message, headers=decision.headers())


def add_headers(response: Any) -> Any:
    """after_request: the RateLimit headers of the request's decision, on success and error answers alike."""
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        for name, value in decision.headers().items():
            if name not in response.headers:
                response.headers[name] = value
    return response
