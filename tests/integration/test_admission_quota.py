"""The unfinished-jobs quota under concurrent submissions, against a real redis-server: the count and
the writes of an admission are one step, so parallel submits can never take a tenant past its quota."""

from __future__ import annotations

import threading

import pytest

from jobs.store import JobStore, active_key
from orchestrator.service import JobService, QuotaExceeded, ServiceConfig
from tests.integration.stack import Stack
from tests.unit.test_orchestrator import Caller, Lanes, RecordingEnqueuer, _submit


@pytest.mark.parametrize("quota", [1, 5])
def test_parallel_submits_never_pass_the_quota(rig: Stack, quota: int) -> None:
    service = JobService(JobStore(rig.redis(), 3600), RecordingEnqueuer(),
                         ServiceConfig(lease_grace_ms=1000, max_active_jobs_per_tenant=quota), Lanes())
    admitted, refused = [], []
    start = threading.Barrier(24)

    def submit() -> None:
        start.wait()
        try:
            admitted.append(_submit(service, caller=Caller(tenant="acme"))[0].job_id)
        except QuotaExceeded:
            refused.append(1)

    threads = [threading.Thread(target=submit) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == quota and len(refused) == 24 - quota
    assert rig.redis().scard(active_key("acme")) == quota
    assert len(service.enqueuer.sent) == quota
    assert _submit(service, caller=Caller(tenant="other"))[0].tenant == "other"  # another tenant's own quota
