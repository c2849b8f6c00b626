"""One trace spans a job's ingress and worker processes: a stack of its own exports to a real OTLP/HTTP
collector started here (protobuf ``ExportTraceServiceRequest`` decoded with opentelemetry-proto), and the
worker's spans carry the ingress span's trace id, which the job resource, the ``job.accepted`` audit
event and the log lines name too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration import problems
from tests.integration.otlp_collector import Collector
from tests.integration.stack import Stack, running_stack, wait_for


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("traced")), OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                       OTEL_BSP_SCHEDULE_DELAY="100") as running:
        yield running


def test_one_trace_spans_the_ingress_and_the_worker_of_a_job(traced: Stack, collector: Collector) -> None:
    token = traced.token(traced.create_client("acme", "quantum:solve solver:heuristic"))
    reply = traced.solve(token, {"problem": problems.tsp(6), "solver": "heuristic"}, budget_ms=5000)
    assert reply.status_code == 202, reply.text
    job = traced.wait_job(token, reply.json()["job_id"], 60)
    trace_id = job["trace_id"]
    assert job["status"] == "succeeded" and len(trace_id) == 32 and int(trace_id, 16), job

    def both_sides() -> list | None:
        spans = collector.of(trace_id)
        services = {service for service, *_ in spans}
        names = {name for _, _, name, _ in spans}
        ready = {"qgate-ingress", "qgate-worker"} <= services and "qgate.attempt" in names
        return spans if ready else None

    spans = wait_for(both_sides, 30, "the ingress's and the worker's spans under the job's trace id")
    names = {(service, name) for service, _, name, _ in spans}
    assert ("qgate-ingress", "qgate.admit") in names
    assert ("qgate-worker", "run/qgate.solve.heuristic") in names  # Celery's span, its parent from the message
    assert any(service == "qgate-ingress" and name.startswith("POST") for service, name in names), names
    worker_run = [s for s in spans if s[2] == "run/qgate.solve.heuristic"][0]
    assert worker_run[3], "the worker's span has a parent: the ingress's context came in the message"

    wait_for(lambda: any(service == "qgate-audit" and name == "qgate.audit.append"
                         for service, _, name, _ in collector.spans) or None, 30, "the audit writer's append spans")
    accepted = traced.wait_audited(job["job_id"], "job.accepted")
    assert [e["data"]["trace_id"] for e in accepted if e["type"] == "job.accepted"] == [trace_id]
    lines = [json.loads(line) for path in traced.logs.glob("*.log") for line in path.read_text().splitlines()
             if line.startswith("{") and trace_id in line]
    assert any(line.get("trace_id") == trace_id for line in lines), "no log line names the trace"


INCOMING = "0af7651916cd43dd8448eb211c80319c"
ODD_TRACE_HEADERS = {
    "garbage": ({"traceparent": "zz", "tracestate": "===", "baggage": "k=%zz%%"}, None),
    "zero ids": ({"traceparent": f"00-{'0' * 32}-{'0' * 16}-01"}, None),
    "version ff": ({"traceparent": f"ff-{INCOMING}-b7ad6b7169203331-01"}, None),
    "valid, with 1000 baggage entries": ({"traceparent": f"00-{INCOMING}-b7ad6b7169203331-01",
                                          "baggage": ",".join(f"k{i}=v" for i in range(1000))}, INCOMING),
}


@pytest.mark.parametrize("case", sorted(ODD_TRACE_HEADERS))
def test_odd_incoming_trace_headers_give_a_job_a_trace_all_the_same(traced: Stack, case: str) -> None:
    """With tracing on, the propagators read what a caller sends: a context they cannot read starts a new
    trace, a valid one is continued; the job is served and audited either way."""
    headers, expected = ODD_TRACE_HEADERS[case]
    token = traced.token(traced.create_client("acme", "quantum:solve solver:heuristic"))
    reply = traced.solve(token, {"problem": problems.tsp(5), "solver": "heuristic"}, budget_ms=800, **headers)
    assert reply.status_code == 200 and reply.json()["status"] == "succeeded", reply.text
    trace_id = reply.json()["trace_id"]
    assert len(trace_id) == 32 and int(trace_id, 16) and trace_id == (expected or trace_id)
    assert trace_id != "0" * 32


def test_without_an_endpoint_jobs_have_no_trace(stack: Stack, token: str) -> None:
    reply = stack.solve(token, {"problem": problems.tsp(5)}, budget_ms=800)
    assert reply.status_code == 200 and reply.json().get("trace_id") is None, reply.text
