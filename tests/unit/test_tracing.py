"""The JSONL exporter, traceparent propagation and the trace tree, with a real TracerProvider."""

from collections.abc import AsyncIterator
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chimera.cluster.tracing import JsonlSpanExporter, context_from_traceparent, traced_generation, traceparent_of
from chimera.models.engine.base import GenerationDelta
from chimera.traceview import read_spans, render, traces


def test_spans_cross_a_traceparent_and_render_as_one_tree(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    provider = TracerProvider(resource=Resource.create({"chimera.process.role": "api", "process.pid": 1}))
    provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path)))
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("root") as root:
        header = traceparent_of(root)
        with tracer.start_as_current_span("child"):
            pass
    # the "remote" side: a fresh provider, parent known only through the header
    remote = TracerProvider(resource=Resource.create({"chimera.process.role": "ray-worker", "process.pid": 2}))
    remote.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path)))
    remote.get_tracer("test").start_span("remote", context=context_from_traceparent(header)).end()

    spans = read_spans(path)
    assert len(spans) == 3
    by_name = {s["name"]: s for s in spans}
    assert by_name["remote"]["parent_id"] == by_name["root"]["span_id"]
    assert by_name["remote"]["trace_id"] == by_name["root"]["trace_id"]
    assert len(traces(spans)) == 1
    lines = list(render(by_name["root"]["trace_id"], spans))
    assert lines[1].startswith("  root") and "[api pid 1]" in lines[1]
    assert {line.strip().split()[0] for line in lines[2:]} == {"child", "remote"}
    assert all(line.startswith("    ") for line in lines[2:])


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"trace_id": "a", "span_id": "b", "parent_id": null, "name": "x", "start_ns": 0, "end_ns": 1}\n{"tra'
    )
    assert [s["name"] for s in read_spans(path)] == ["x"]


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
