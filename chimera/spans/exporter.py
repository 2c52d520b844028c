"""`StoreSpanExporter`: an OpenTelemetry exporter that writes a process's finished spans to a `SpanStore`, and
`span_record`, the record shape of one span."""

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from chimera.spans.store import SpanStore, SpanStoreError

log = logging.getLogger(__name__)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a store record (`chimera.spans.store`'s shape)."""
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


class StoreSpanExporter(SpanExporter):
    """Writes each batch of spans to `store` before returning (under a `SimpleSpanProcessor`: one write per span as
    it ends, nothing buffered to lose when the process is killed). Closes the store on shutdown."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.store.add([span_record(s) for s in spans])
        except SpanStoreError as e:  # the exporter contract: report failure, never raise into the traced code
            log.warning("%d spans not stored: %s", len(spans), e)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.store.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is written before it returns
