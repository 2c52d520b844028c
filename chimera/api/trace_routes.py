"""Traces: OTLP/HTTP ingestion (POST /v1/traces) and the query API (GET /v1/traces, GET /v1/traces/{trace_id}).

A key of the `admin` role sees every tenant's traces and stores the spans it sends as they are; any other key sees
only traces of its own tenant, and the spans it sends are stamped with that tenant (and may not join a stored trace
of another tenant: 403).
"""

import asyncio
import dataclasses
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from chimera.api.errors import APIError
from chimera.api.requests import read_body
from chimera.api.trace_query import PARAMS, trace_query
from chimera.identity.principal import Principal
from chimera.spans import otlp
from chimera.spans.records import summary_of
from chimera.spans.store import SpanStore, TraceNotFoundError, TracePage

router = APIRouter()
_OTLP_BODY = {"required": True, "content": {otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                                            otlp.JSON: {"schema": {"type": "object"}}}}  # fmt: skip
_OTLP_REPLY = {"description": "Stored (every span of the request).",
               "content": {otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                           otlp.JSON: {"schema": {"type": "object"}}}}  # fmt: skip


def _store(request: Request) -> SpanStore:
    store: SpanStore | None = request.app.state.spans
    if store is None:
        raise APIError(404, "tracing is off on this server (tracing.exporter: none)", code="tracing_disabled")
    return store


@router.post("/v1/traces", openapi_extra={"requestBody": _OTLP_BODY}, responses={200: _OTLP_REPLY})
async def ingest(request: Request) -> Response:
    """An OTLP/HTTP trace export, protobuf or JSON (gzip allowed): all its spans are stored, or none (400)."""
    store = _store(request)
    limit = request.app.state.limits.max_body_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = _decompressed(await read_body(request, request.app.state.limits), request, limit)
    spans = otlp.decode(body, content_type)
    principal: Principal = request.state.principal
    if not principal.is_admin:
        for span in spans:
            span["attributes"]["chimera.tenant"] = principal.tenant
        await asyncio.to_thread(_refuse_foreign_traces, store, spans, principal.tenant)
    await asyncio.to_thread(store.add, spans)
    if content_type == otlp.PROTOBUF:
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=otlp.PROTOBUF)
    return JSONResponse({})


@router.get("/v1/traces", openapi_extra={"parameters": [
    {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    for name, (description, schema) in PARAMS.items()
]})  # fmt: skip
async def list_traces(request: Request) -> dict[str, Any]:
    """Trace summaries, newest first, filtered by the query parameters; `next_cursor` fetches the next page."""
    store = _store(request)
    query = trace_query(dict(request.query_params))
    principal: Principal = request.state.principal
    if not principal.is_admin:
        if query.tenant not in (None, principal.tenant):
            return _page(TracePage([], None))
        query = dataclasses.replace(query, tenant=principal.tenant)
    return _page(await asyncio.to_thread(store.traces, query))


@router.get("/v1/traces/{trace_id}")
async def get_trace(trace_id: str, request: Request) -> dict[str, Any]:
    """Every span of one trace, oldest first (a child whose parent has not arrived included)."""
    spans = await asyncio.to_thread(_store(request).trace, trace_id)
    principal: Principal = request.state.principal
    if not principal.is_admin and summary_of(trace_id, spans).tenant != principal.tenant:
        raise TraceNotFoundError(f"no trace {trace_id}")  # another tenant's trace is as unknown as a missing one
    return {"trace_id": trace_id, "spans": spans}


def _refuse_foreign_traces(store: SpanStore, spans: list[dict[str, Any]], tenant: str) -> None:
    """403 when a span would join a stored trace that is not `tenant`'s (its summary, and so who sees it, would
    change hands)."""
    for trace_id in dict.fromkeys(s["trace_id"] for s in spans):
        try:
            stored = store.trace(trace_id)
        except TraceNotFoundError:
            continue
        if summary_of(trace_id, stored).tenant != tenant:
            raise APIError(403, f"trace {trace_id} is not this key's tenant's", "permission_error",
                           code="permission_denied")  # fmt: skip


def _page(page: TracePage) -> dict[str, Any]:
    return {"object": "list", "data": [s.as_dict() for s in page.items], "next_cursor": page.next_cursor}


def _decompressed(body: bytes, request: Request, limit: int) -> bytes:
    """The body without its `content-encoding` (gzip, or none), no larger than `limit` (413)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise APIError(400, f"content-encoding must be gzip or none, not {encoding}", code="invalid_encoding")
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as e:
        raise APIError(400, f"the body is not valid gzip: {e}", code="invalid_encoding") from e
    if len(out) > limit:
        raise APIError(413, f"request body exceeds {limit} bytes once decompressed", code="request_too_large")
    if not inflate.eof:
        raise APIError(400, "the gzip body is truncated", code="invalid_encoding")
    return out
