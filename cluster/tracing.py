"""OpenTelemetry setup for every Chimera process: the API driver and each Ray worker.

One request makes one trace across processes: the W3C `traceparent` of the caller's span travels explicitly
inside each Ray call (Ray's own tracing is alpha), and the callee starts its spans under it.

Exporter: OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or `tracing.exporter: otlp`), else one JSONL
file that every process appends whole lines to (`chimera traces` reads it).
"""

import json
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from chimera.models.engine.base import GenerationDelta

# Ray's worker_process_setup_hook takes no arguments: the driver hands the settings over in these variables.
ENV_EXPORTER = "CHIMERA_TRACE_EXPORTER"  # "otlp" | "file" | "none"
ENV_TRACE_FILE = "CHIMERA_TRACE_FILE"
ENV_SERVICE = "CHIMERA_TRACE_SERVICE"

_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()


class JsonlSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line; safe across processes (one O_APPEND write per line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        os.write(self._fd, lines.encode("utf-8"))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        os.close(self._fd)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The JSON shape of one span in the trace file."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "resource": {k: v for k, v in span.resource.attributes.items() if not k.startswith("telemetry.")},
    }


def resolve_exporter(configured: str) -> str:
    """`auto` becomes `otlp` when an OTLP endpoint is set in the environment, else `file`."""
    if configured != "auto":
        return configured
    return "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "file"


def trace_file(data_dir: Path) -> Path:
    return data_dir / "traces.jsonl"


def setup_tracing(exporter: str, *, service: str, role: str, path: Path | None = None) -> None:
    """Install this process's global TracerProvider once; later calls are no-ops.

    Args:
        exporter: `otlp`, `file` or `none` (resolved, not `auto`).
        service: `service.name`.
        role: what this process is (`api`, `expert`, …), recorded as `chimera.process.role`.
        path: the JSONL file, for the `file` exporter.
    """
    with _lock:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return
        resource = Resource.create({"service.name": service, "process.pid": os.getpid(), "chimera.process.role": role})
        provider = TracerProvider(resource=resource)
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif exporter == "file":
            if path is None:
                raise ValueError("the file exporter needs a path")
            # Synchronous: one small append per span, and nothing left unflushed when an actor is killed.
            provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path)))
        trace.set_tracer_provider(provider)


def worker_env(exporter: str, *, service: str, path: Path) -> dict[str, str]:
    """Environment that lets `setup_worker_tracing` configure a Ray worker like the driver."""
    env = {ENV_EXPORTER: exporter, ENV_SERVICE: service, ENV_TRACE_FILE: str(path.resolve())}
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    return env


def setup_worker_tracing() -> None:
    """Ray `worker_process_setup_hook`: tracing in every worker process, from `worker_env`'s variables."""
    exporter = os.environ.get(ENV_EXPORTER, "none")
    path = os.environ.get(ENV_TRACE_FILE)
    setup_tracing(
        exporter,
        service=os.environ.get(ENV_SERVICE, "chimera"),
        role="ray-worker",
        path=Path(path) if path else None,
    )


def flush_tracing() -> None:
    """Export what is buffered (call before an actor exits)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C traceparent header value that makes a remote span a child of `span`."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """The parent context a `traceparent` names; None starts a new trace."""
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent})


def trace_id_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


async def traced_generation(
    span: trace.Span, deltas: "AsyncIterator[GenerationDelta]"
) -> "AsyncIterator[GenerationDelta]":
    """Pass `deltas` through, then end `span` with GenAI usage, finish reason and time to first token.

    An exception is recorded on the span and re-raised; a stream closed early closes `deltas` too and ends
    with finish reason `abort`.
    """
    started = time.monotonic_ns()
    first_ns: int | None = None
    last: GenerationDelta | None = None
    try:
        async for delta in deltas:
            if first_ns is None and (delta.text or delta.completion_tokens):
                first_ns = time.monotonic_ns()
            last = delta
            yield delta
    except Exception as e:
        span.record_exception(e)
        span.set_status(trace.StatusCode.ERROR, str(e))
        raise
    finally:
        if hasattr(deltas, "aclose"):  # closed early: close the source now, so the engine aborts at once
            await deltas.aclose()
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": last.prompt_tokens if last else 0,
                "gen_ai.usage.output_tokens": last.completion_tokens if last else 0,
                "gen_ai.response.finish_reasons": [(last and last.finish_reason) or "abort"],
            }
        )
        if first_ns is not None:
            span.set_attribute("chimera.ttft_ms", (first_ns - started) / 1e6)
        span.end()
