"""OpenTelemetry traces: exported over OTLP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and nothing at all otherwise.

The instrumentation packages do the propagation: Flask's opens the ingress span, Celery's injects the
context into a published task's headers and opens the worker's span from them, Redis's traces each
command. The first attempt's message is written by the admission script rather than published, so
``inject`` puts the same W3C ``traceparent`` header into it. Our own spans (``span``) mark planning and
solving. Each process configures its own provider after it is forked (a gunicorn worker when it builds
the app, a Celery pool child in ``worker_process_init``): a batch exporter's thread does not survive a fork.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any, ContextManager, Mapping

_enabled = False
_instrumented: frozenset[str] = frozenset()
INSTRUMENTATIONS = frozenset({"flask", "celery", "redis"})


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"


def instrumentations(env: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The instrumentations to install: all but those the standard ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
    names (comma-separated). Redis's opens a span per command, about eight per submit, and is the bulk
    of what tracing costs there (`bench.tracing`)."""
    disabled = {name.strip().lower() for name in env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    return INSTRUMENTATIONS - disabled


DEFAULT_EXPORT_TIMEOUT_S = 2.0


def export_timeout_s(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds one OTLP export may wait: the operator's OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT (None: the
    exporter reads it), else 2 s. The exporter's own default, 10 s, is what a collector that accepts and
    never answers cost every process at exit, spent by the last flush: the ingress stopped in 13.9 s
    instead of 2.5 s, the audit writer in 11.2 s instead of 0.2 s. Spans are exported in the background,
    so a shorter wait costs no request anything."""
    if env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
        return None
    return DEFAULT_EXPORT_TIMEOUT_S


def configure(service_name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider exporting over OTLP/HTTP (once per process); False when not wanted."""
    global _enabled, _instrumented
    if _enabled or not wanted(env):
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=export_timeout_s(env))))
    trace.set_tracer_provider(provider)
    _instrumented = instrumentations(env)
    if "redis" in _instrumented:
        RedisInstrumentor().instrument()
    _enabled = True
    return True


def enabled() -> bool:
    return _enabled


def instrument_flask(app: Any) -> None:
    if _enabled and "flask" in _instrumented:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app)


def instrument_celery() -> None:
    if _enabled and "celery" in _instrumented:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


def trace_id() -> str | None:
    """The current span's trace id as 32 lowercase hex digits, or None (tracing off, no span)."""
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def inject(headers: dict[str, Any]) -> None:
    """Add the current context's W3C headers (``traceparent``) to a message's headers."""
    if _enabled:
        from opentelemetry.propagate import inject as propagate

        propagate(headers)


def span(name: str, **attributes: Any) -> ContextManager[Any]:
    """A span of our own around a step (planning, solving); a no-op context when tracing is off."""
    if not _enabled:
        return nullcontext()
    from opentelemetry import trace

    return trace.get_tracer("qgate").start_as_current_span(
        name, attributes={k: v for k, v in attributes.items() if isinstance(v, (str, int, float, bool))})


def span_in_trace(name: str, trace_id: str | None, **attributes: Any) -> ContextManager[Any]:
    """A span of our own inside the trace ``trace_id`` (a job's), for work that no message carried the
    context to (a webhook delivery scheduled from the job's outbox). Its parent is the trace's remote
    context, not a recorded span: backends show it under the trace with an unknown parent."""
    if not _enabled or not trace_id:
        return span(name, **attributes)
    import secrets

    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    try:
        parent_trace = int(trace_id, 16)
    except ValueError:
        return span(name, **attributes)
    parent = SpanContext(trace_id=parent_trace, span_id=secrets.randbits(64) or 1, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    return trace.get_tracer("qgate").start_as_current_span(
        name, context=context,
        attributes={k: v for k, v in attributes.items() if isinstance(v, (str, int, float, bool))})


def add_trace_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every line logged inside a span carries its ``trace_id``."""
    if _enabled and "trace_id" not in event:
        current = trace_id()
        if current:
            event["trace_id"] = current
    return event
