"""The span store exporter, traceparent propagation and the trace tree, with a real TracerProvider."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chimera.cluster.tracing import (
    ENV_SPAN_STORE,
    ENV_TRACING,
    context_from_traceparent,
    resolve_exporter,
    traced_generation,
    traceparent_of,
    worker_env,
)
from chimera.config import TracingConfig
from chimera.models.engine.base import GenerationDelta
from chimera.spans.exporter import StoreSpanExporter
from chimera.spans.sqlite import SqliteSpanStore
from chimera.spans.store import TraceQuery
from chimera.traceview import render


def _provider(path: Path, role: str, pid: int) -> TracerProvider:
    """A process's provider, writing the store at `path` synchronously (each has a store of its own, as each
    process does)."""
    provider = TracerProvider(resource=Resource.create({"chimera.process.role": role, "process.pid": pid}))
    provider.add_span_processor(SimpleSpanProcessor(StoreSpanExporter(SqliteSpanStore(path))))
    return provider


def test_spans_cross_a_traceparent_into_one_stored_trace_and_render_as_one_tree(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    tracer = _provider(path, "api", 1).get_tracer("test")
    with tracer.start_as_current_span("root", attributes={"chimera.tenant": "acme"}) as root:
        header = traceparent_of(root)
        with tracer.start_as_current_span("child"):
            pass
        # the "remote" side: a fresh provider, parent known only through the header; it ends before the root
        remote = _provider(path, "ray-worker", 2)
        remote.get_tracer("test").start_span("remote", context=context_from_traceparent(header)).end()
        remote.shutdown()  # closes its store: its span was written when it ended

    store = SqliteSpanStore(path)
    (summary,) = store.traces(TraceQuery()).items
    assert summary.root_name == "root" and summary.span_count == 3 and summary.tenant == "acme"
    assert summary.processes == ["api 1", "ray-worker 2"]
    spans = store.trace(summary.trace_id)
    by_name = {s["name"]: s for s in spans}
    assert by_name["remote"]["parent_id"] == by_name["root"]["span_id"]
    assert by_name["remote"]["resource"]["chimera.process.role"] == "ray-worker"
    lines = list(render(summary.trace_id, spans))
    assert lines[1].startswith("  root") and "[api pid 1]" in lines[1]
    assert {line.strip().split()[0] for line in lines[2:]} == {"child", "remote"}
    assert all(line.startswith("    ") for line in lines[2:])
    store.close()


def test_an_export_the_store_refuses_fails_without_raising(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "traces.sqlite")
    exporter = StoreSpanExporter(store)
    span = TracerProvider().get_tracer("test").start_span("y")
    span.end()
    store.close()
    assert exporter.export([span]) == SpanExportResult.FAILURE


def test_auto_exports_to_the_store_unless_an_otlp_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert resolve_exporter(TracingConfig()) == "store"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert resolve_exporter(TracingConfig()) == "otlp" and resolve_exporter(TracingConfig(exporter="store")) == "store"
    env = worker_env(TracingConfig(also_store=True, max_spans=1000), store_path=tmp_path / "traces.sqlite")
    worker = TracingConfig.model_validate_json(env[ENV_TRACING])  # what a Ray worker is set up with
    assert worker.exporter == "otlp" and worker.also_store and worker.max_spans == 1000
    assert env[ENV_SPAN_STORE] == str((tmp_path / "traces.sqlite").resolve())
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"


def test_no_traceparent_starts_a_new_trace() -> None:
    assert context_from_traceparent(None) is None
    assert trace.get_current_span(context_from_traceparent("garbage")).get_span_context().is_valid is False


async def test_traced_generation_records_usage_and_closes_the_source_when_abandoned() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    closed: list[bool] = []

    async def source(n: int) -> AsyncIterator[GenerationDelta]:
        try:
            for i in range(1, n + 1):
                yield GenerationDelta(
                    text="x", prompt_tokens=7, completion_tokens=i, finish_reason="length" if i == n else None
                )
        finally:
            closed.append(True)

    assert len([d async for d in traced_generation(tracer.start_span("full"), source(3))]) == 3
    stream = traced_generation(tracer.start_span("abandoned"), source(100))
    assert (await anext(stream)).completion_tokens == 1
    await stream.aclose()

    full, abandoned = exporter.get_finished_spans()
    assert full.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert full.attributes["gen_ai.usage.output_tokens"] == 3 and full.attributes["gen_ai.usage.input_tokens"] == 7
    assert full.attributes["chimera.ttft_ms"] >= 0
    assert abandoned.attributes["gen_ai.response.finish_reasons"] == ("abort",)
    assert abandoned.attributes["gen_ai.usage.output_tokens"] == 1
    assert closed == [True, True]
