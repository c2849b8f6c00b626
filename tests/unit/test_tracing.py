"""Spans placed into a job's trace by id (a webhook delivery), recorded with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import tracing

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def tracing_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "_enabled", True)
    EXPORTER.clear()
    yield EXPORTER


def test_a_span_placed_in_a_jobs_trace_carries_its_trace_id(tracing_on: InMemorySpanExporter) -> None:
    job_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with tracing.span_in_trace("qgate.webhook.deliver", job_trace, job_id="j1"):
        assert tracing.trace_id() == job_trace
    [recorded] = tracing_on.get_finished_spans()
    assert format(recorded.context.trace_id, "032x") == job_trace and recorded.parent is not None
    assert recorded.attributes["job_id"] == "j1"


@pytest.mark.parametrize("bad", [None, "", "not-hex", "zz" * 16])
def test_without_a_usable_trace_id_the_span_starts_a_trace_of_its_own(tracing_on: InMemorySpanExporter,
                                                                      bad: str | None) -> None:
    with tracing.span_in_trace("qgate.webhook.deliver", bad):
        assert tracing.trace_id() is not None
    assert len(tracing_on.get_finished_spans()) == 1


def test_with_tracing_off_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_enabled", False)
    EXPORTER.clear()
    with tracing.span_in_trace("x", "4bf92f3577b34da6a3ce929d0e0e4736"), tracing.span("y"):
        assert tracing.trace_id() is None
    assert EXPORTER.get_finished_spans() == ()
    assert not tracing.wanted({}) and not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                                                          "OTEL_SDK_DISABLED": "true"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x"})


@pytest.mark.parametrize("disabled, expected", [
    ("", {"flask", "celery", "redis"}),
    ("redis", {"flask", "celery"}),
    (" Redis , celery,unknown", {"flask"}),
])
def test_the_standard_variable_turns_instrumentations_off(disabled: str, expected: set[str]) -> None:
    assert tracing.instrumentations({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled}) == expected


@pytest.mark.parametrize("disabled, redis_traced", [("", True), ("redis", False)])
def test_a_process_told_to_leave_redis_alone_opens_no_redis_spans(disabled: str, redis_traced: bool) -> None:
    program = ("from telemetry import tracing\n"
               "from opentelemetry.instrumentation.redis import RedisInstrumentor\n"
               "assert tracing.configure('probe')\n"
               "print(RedisInstrumentor().is_instrumented_by_opentelemetry)\n")
    env = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled}
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(redis_traced)
