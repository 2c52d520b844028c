"""Decode an OTLP/HTTP `ExportTraceServiceRequest` into span records (the `SpanStore` shape).

Two encodings, as the OTLP specification defines them: binary protobuf (`application/x-protobuf`) and the proto3
JSON mapping (`application/json`), in which, unlike plain proto3 JSON, `traceId` and `spanId` are hex strings. The
JSON form is turned into the protobuf message (hex ids to bytes first), so both take one path to records. A body
that does not decode whole (torn, malformed, ids of the wrong length) is refused whole: nothing of it is kept.
"""

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from chimera.spans.store import SpanStoreError

PROTOBUF, JSON = "application/x-protobuf", "application/json"
_STATUS = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class OtlpDecodeError(SpanStoreError):
    """The body is not a whole, valid OTLP export request."""


def decode(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The span records of an export request in `content_type` (PROTOBUF or JSON).

    Raises:
        OtlpDecodeError: another content type, or a body that does not decode.
    """
    if content_type == PROTOBUF:
        return decode_protobuf(body)
    if content_type == JSON:
        return decode_json(body)
    raise OtlpDecodeError(f"content type must be {PROTOBUF} or {JSON}, not {content_type or 'none'}")


def decode_protobuf(body: bytes) -> list[dict[str, Any]]:
    """Records of a binary `ExportTraceServiceRequest`."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError) as e:
        raise OtlpDecodeError(f"not a valid OTLP protobuf export request: {e}") from e
    return records(request)


def decode_json(body: bytes) -> list[dict[str, Any]]:
    """Records of an OTLP JSON `ExportTraceServiceRequest` (unknown fields are ignored, as the spec asks)."""
    try:
        raw = json.loads(body.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the body must be a JSON object")
        request = json_format.ParseDict(_ids_as_base64(raw), ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (ValueError, TypeError, RecursionError, json_format.ParseError) as e:  # JSON, UTF-8 errors: ValueErrors
        raise OtlpDecodeError(f"not a valid OTLP JSON export request: {e}") from e
    return records(request)


def records(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Every span of a decoded request as a record, its resource's attributes in `resource`."""
    out: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = {k: v for k, v in _attributes(resource_spans.resource.attributes).items()
                    if not k.startswith("telemetry.")}  # fmt: skip
        for scope_spans in resource_spans.scope_spans:
            out.extend(_record(span, resource) for span in scope_spans.spans)
    return out


def _record(span: Span, resource: dict[str, Any]) -> dict[str, Any]:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise OtlpDecodeError(f"span {span.name!r}: trace id must be 16 bytes, not all zero")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise OtlpDecodeError(f"span {span.name!r}: span id must be 8 bytes, not all zero")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise OtlpDecodeError(f"span {span.name!r}: parent span id must be 8 bytes or empty")
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_span_id.hex() if any(span.parent_span_id) else None,
        "name": span.name,
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "status": _STATUS.get(span.status.code, "UNSET"),
        "attributes": _attributes(span.attributes),
        "resource": dict(resource),
    }


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _value(value: AnyValue) -> Any:
    """An AnyValue as JSON: arrays as lists, key-value lists as objects, bytes as base64 text."""
    match value.WhichOneof("value"):
        case "string_value":
            return value.string_value
        case "bool_value":
            return value.bool_value
        case "int_value":
            return value.int_value
        case "double_value":
            return value.double_value
        case "array_value":
            return [_value(v) for v in value.array_value.values]
        case "kvlist_value":
            return _attributes(value.kvlist_value.values)
        case "bytes_value":
            return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _ids_as_base64(node: Any) -> Any:
    """The JSON request with its hex trace and span ids re-encoded as proto3 JSON's base64 bytes."""
    if isinstance(node, list):
        return [_ids_as_base64(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, v in node.items():
        if key in _ID_FIELDS and isinstance(v, str):
            try:
                v = base64.b64encode(bytes.fromhex(v)).decode("ascii")
            except ValueError as e:
                raise ValueError(f"{key} must be hex, not {v!r:.40}") from e
        else:
            v = _ids_as_base64(v)
        out[key] = v
    return out
