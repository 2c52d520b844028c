"""OpenTelemetry setup for every Chimera process: the API driver and each Ray worker.

One request makes one trace across processes: the W3C `traceparent` of the caller's span travels explicitly
inside each Ray call (Ray's own tracing is alpha), and the callee starts its spans under it.

Exporters (`tracing.exporter`): the span store (`<data_dir>/traces.sqlite`), which every process of the host
writes directly and synchronously, or OTLP/HTTP to an external collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is
set (or `otlp` is configured), with the store beside it when `tracing.also_store` is on.
"""

import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chimera.config import TracingConfig
from chimera.spans.exporter import StoreSpanExporter
from chimera.spans.factory import open_span_store
from chimera.spans.store import SpanStoreError

if TYPE_CHECKING:
    from chimera.models.engine.base import GenerationDelta

# Ray's worker_process_setup_hook takes no arguments: the driver hands the settings over in these variables.
ENV_TRACING = "CHIMERA_TRACING"  # the TracingConfig as JSON, its exporter resolved on the driver
ENV_SPAN_STORE = "CHIMERA_SPAN_STORE"  # the span store file

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()


def resolve_exporter(tracing: TracingConfig) -> Literal["store", "otlp", "none"]:
    """`auto` becomes `otlp` when an OTLP endpoint is set in the environment, else `store`."""
    if tracing.exporter != "auto":
        return tracing.exporter
    return "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "store"


def _store_processor(exporter: StoreSpanExporter, role: str) -> SpanProcessor:
    """The API process writes its spans in batches from the processor's thread (every 100 ms, flushed at exit), so
    that no request's event loop waits for SQLite; workers write each span as it ends, synchronously, so that
    nothing is left unwritten when an actor is killed."""
    if role == "api":
        return BatchSpanProcessor(exporter, schedule_delay_millis=100)
    return SimpleSpanProcessor(exporter)


def setup_tracing(tracing: TracingConfig, *, store_path: Path, role: str) -> None:
    """Install this process's global TracerProvider once; later calls are no-ops.

    Args:
        tracing: the exporter (and whether the store is written beside OTLP), `service.name`, the store's limits.
        store_path: the span store file.
        role: what this process is (`api`, `ray-worker`, …), recorded as `chimera.process.role`.
    """
    with _lock:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return
        exporter = resolve_exporter(tracing)
        resource = Resource.create(
            {"service.name": tracing.service_name, "process.pid": os.getpid(), "chimera.process.role": role}
        )
        provider = TracerProvider(resource=resource)
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if exporter == "store" or (exporter == "otlp" and tracing.also_store):
            try:
                store = open_span_store(tracing, store_path)
            except SpanStoreError as e:  # a worker serves without its spans rather than not at all (the API's
                # own store, opened by `build_service`, fails the server's start instead)
                log.error("tracing to the span store is off in this %s process: %s", role, e)
            else:
                provider.add_span_processor(_store_processor(StoreSpanExporter(store), role))
        trace.set_tracer_provider(provider)


WORKER_SETUP_HOOK = "chimera.cluster.tracing.setup_worker_tracing"  # Ray's worker_process_setup_hook


def worker_env(tracing: TracingConfig, *, store_path: Path) -> dict[str, str]:
    """Environment that lets `setup_worker_tracing` configure a Ray worker like the driver."""
    resolved = tracing.model_copy(update={"exporter": resolve_exporter(tracing)})
    env = {ENV_TRACING: resolved.model_dump_json(), ENV_SPAN_STORE: str(store_path.resolve())}
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    return env


def setup_worker_tracing() -> None:
    """Ray `worker_process_setup_hook`: tracing in every worker process, from `worker_env`'s variables (none: off)."""
    settings, path = os.environ.get(ENV_TRACING), os.environ.get(ENV_SPAN_STORE)
    if not settings or not path:
        setup_tracing(TracingConfig(exporter="none"), store_path=Path(), role="ray-worker")
        return
    setup_tracing(TracingConfig.model_validate_json(settings), store_path=Path(path), role="ray-worker")


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
