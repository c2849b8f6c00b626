"""Spans placed into a job's trace by id (a webhook delivery), recorded with the SDK's in-memory exporter."""

from __future__ import annotations

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
