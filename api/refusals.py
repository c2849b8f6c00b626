"""The orchestrator's refusals in HTTP terms: one table, so every view answers them alike."""

from __future__ import annotations

from api.errors import ApiError
from orchestrator import deliveries, service

STATUS: dict[type[service.Refused], int] = {
    service.PolicyRefused: 403,
    service.QuotaExceeded: 429,
    service.NoLaneCanSolve: 422,
    service.NoLaneAvailable: 503,
    service.IdempotencyConflict: 409,
    service.JobNotFound: 404,
    service.JobAlreadyFinished: 409,
    deliveries.NotRedeliverable: 409,
}


def as_api_error(refused: service.Refused) -> ApiError:
    status = next((code for kind, code in STATUS.items() if isinstance(refused, kind)), 409)
    headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s else None
    return ApiError(status, refused.message, errors=refused.reasons, headers=headers)
