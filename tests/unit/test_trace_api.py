"""The trace API over the real app: OTLP/HTTP ingestion (protobuf from the real OTLP exporter's encoder, and OTLP
JSON), torn and malformed payloads, the query API's filters and errors, and tenancy; the real SQLite store in the
data dir, real Redis and rails, a scripted engine."""

import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from chimera.config import ChimeraConfig, load_config
from chimera.guardrails.nemo_rails import NemoRails
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process

ROOT = Path(__file__).resolve().parents[2]
ADMIN, ALICE, BOB = "admin-key-0123456789", "alice-key-0123456789", "bob-key-01234567890"
PROTOBUF, JSON = {"content-type": "application/x-protobuf"}, {"content-type": "application/json"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path_factory.mktemp("chimera-traces"))
    raw["server"] = {**raw.get("server", {}), "max_body_bytes": 100_000, "api_keys": [
        {"key": ADMIN, "id": "admin", "role": "admin"},
        {"key": ALICE, "id": "alice", "tenant": "acme"},
        {"key": BOB, "id": "bob", "tenant": "globex"},
    ]}  # fmt: skip
    path = Path(raw["data_dir"]) / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture
async def stack(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    async with in_process(config, ScriptedEngine([]), redis_url, nemo_rails) as (service, http):
        yield service, http


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _exported(marker: str, *, tenant: str | None = None) -> tuple[bytes, str]:
    """A protobuf export request made by the OTLP exporter's own encoder from real SDK spans; and its trace id."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing", "process.pid": 42}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    attributes: dict[str, Any] = {"marker": marker, "n": 3, "ok": True, "ratio": 0.5, "tags": ["a", "b"],
                                  "chimera.model": "billing-llm", "gen_ai.usage.input_tokens": 9}  # fmt: skip
    if tenant:
        attributes["chimera.tenant"] = tenant
    with (
        tracer.start_as_current_span("invoice", attributes=attributes) as root,
        tracer.start_as_current_span("charge") as child,
    ):
        child.set_status(Status(StatusCode.ERROR, "card declined"))
    trace_id = format(root.get_span_context().trace_id, "032x")
    return encode_spans(memory.get_finished_spans()).SerializeToString(), trace_id


def _json_export(**span: Any) -> bytes:
    """An OTLP JSON export request of one span."""
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


async def _listed(http: httpx.AsyncClient, key: str = ADMIN, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/v1/traces", params=params, headers=_auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    return list(body["data"])


async def test_a_protobuf_export_from_the_otlp_encoder_is_stored_and_queryable(stack: Any) -> None:
    service, http = stack
    marker = uuid.uuid4().hex
    body, trace_id = _exported(marker)
    response = await http.post("/v1/traces", content=body, headers={**PROTOBUF, **_auth(ADMIN)})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    ExportTraceServiceResponse.FromString(response.content)  # a valid (empty: all accepted) OTLP response

    (summary,) = await _listed(http, q=marker)
    assert summary["trace_id"] == trace_id and summary["root_name"] == "invoice" and summary["span_count"] == 2
    assert summary["error"] is True and summary["model"] == "billing-llm" and summary["input_tokens"] == 9
    assert summary["processes"] == ["billing 42"]
    got = await http.get(f"/v1/traces/{trace_id}", headers=_auth(ADMIN))
    assert got.status_code == 200 and got.json()["trace_id"] == trace_id
    invoice, charge = got.json()["spans"]
    assert invoice["attributes"] == {"marker": marker, "n": 3, "ok": True, "ratio": 0.5, "tags": ["a", "b"],
                                     "chimera.model": "billing-llm", "gen_ai.usage.input_tokens": 9}  # fmt: skip
    assert invoice["parent_id"] is None and charge["parent_id"] == invoice["span_id"] and charge["status"] == "ERROR"
    assert invoice["resource"]["service.name"] == "billing" and "telemetry.sdk.name" not in invoice["resource"]
    gzipped = await http.post("/v1/traces", content=gzip.compress(_exported(marker + "-gz")[0]),
                              headers={**PROTOBUF, **_auth(ADMIN), "content-encoding": "gzip"})  # fmt: skip
    assert gzipped.status_code == 200 and len(await _listed(http, q=marker + "-gz")) == 1
    assert service.spans is not None and service.spans.count() >= 4


async def test_an_otlp_json_export_is_stored_with_its_values_decoded(stack: Any) -> None:
    _, http = stack
    trace_id, span_id, parent_id = uuid.uuid4().hex, "5b8efff798038103", "eee19b7ec3c1b174"
    now = time.time_ns()
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{"scope": {"name": "my.library"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": parent_id, "name": "I'm a server span",
            "kind": 2, "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 2_500_000),
            "status": {"code": 2, "message": "boom"}, "futureField": {"ignored": True},
            "attributes": [
                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                {"key": "count", "value": {"intValue": "42"}},
                {"key": "pi", "value": {"doubleValue": 3.14}},
                {"key": "flags", "value": {"arrayValue": {"values": [{"boolValue": True}, {"intValue": 7}]}}},
                {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
                {"key": "raw", "value": {"bytesValue": "aGk="}},
                {"key": "gen_ai.conversation.id", "value": {"stringValue": "conv-1"}},
            ]}]}]}]}  # fmt: skip
    response = await http.post("/v1/traces", content=json.dumps(body), headers={**JSON, **_auth(ADMIN)})
    assert response.status_code == 200 and response.json() == {}
    got = (await http.get(f"/v1/traces/{trace_id}", headers=_auth(ADMIN))).json()
    (stored,) = got["spans"]
    assert stored["span_id"] == span_id and stored["parent_id"] == parent_id and stored["status"] == "ERROR"
    assert stored["start_ns"] == now and stored["end_ns"] == now + 2_500_000
    assert stored["attributes"] == {"my.span.attr": "some value", "count": 42, "pi": 3.14, "flags": [True, 7],
                                    "map": {"k": "v"}, "raw": "aGk=", "gen_ai.conversation.id": "conv-1"}  # fmt: skip
    assert stored["resource"] == {"service.name": "my.service"}
    (summary,) = await _listed(http, session="conv-1")
    assert summary["root_name"] == "I'm a server span" and summary["duration_ms"] == 2.5  # its parent never came


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (lambda: _exported("torn")[0][:-7], PROTOBUF),  # torn: the last bytes never arrived
        (lambda: _exported("torn")[0][:40], PROTOBUF),
        (lambda: b"\xff\xff\xff\xff", PROTOBUF),
        (lambda: b'{"resourceSpans": [', JSON),
        (lambda: b"[1, 2]", JSON),
        (lambda: _json_export(traceId="zz" * 16, spanId="01" * 8, name="bad hex"), JSON),
        (lambda: _json_export(traceId="ab" * 8, spanId="01" * 8, name="short id"), JSON),
        (lambda: _json_export(traceId="ab" * 16, spanId="01" * 8, name=5), JSON),
        (lambda: _exported("text")[0], {"content-type": "text/plain"}),
        (lambda: gzip.compress(_exported("gz")[0])[:-9], {**PROTOBUF, "content-encoding": "gzip"}),
    ],
)
async def test_a_torn_or_malformed_export_is_a_400_and_stores_nothing(
    stack: Any, content: Any, headers: dict[str, str]
) -> None:
    service, http = stack
    before = service.spans.count()
    response = await http.post("/v1/traces", content=content(), headers={**headers, **_auth(ADMIN)})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_otlp", "invalid_encoding")
    assert service.spans.count() == before


async def test_a_body_over_max_body_bytes_is_a_413(stack: Any) -> None:
    _, http = stack
    response = await http.post("/v1/traces", content=b"\x0a" * 100_001, headers={**PROTOBUF, **_auth(ADMIN)})
    assert response.status_code == 413


async def test_filters_narrow_the_list_and_pages_follow_the_cursor(stack: Any) -> None:
    _, http = stack
    marker = uuid.uuid4().hex
    started = time.time_ns()
    for i in range(5):
        body = _exported(f"{marker} {'even' if i % 2 == 0 else 'odd'}")[0]
        assert (await http.post("/v1/traces", content=body, headers={**PROTOBUF, **_auth(ADMIN)})).status_code == 200
    assert len(await _listed(http, q=marker)) == 5
    assert len(await _listed(http, q=f"{marker} even")) == 3
    assert len(await _listed(http, q=marker, since=str(started))) == 5
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    assert await _listed(http, q=marker, since=iso) == []
    assert len(await _listed(http, q=marker, until=iso, status="error", model="billing-llm")) == 5
    assert await _listed(http, q=marker, status="ok") == [] and await _listed(http, q=marker, min_tokens=10) == []
    assert await _listed(http, q=marker, expert="code") == []
    assert await _listed(http, q=marker, min_duration_ms=10**6) == []
    first = (await http.get("/v1/traces", params={"q": marker, "limit": 2}, headers=_auth(ADMIN))).json()
    second = (await http.get("/v1/traces", params={"q": marker, "limit": 2, "cursor": first["next_cursor"]},
                             headers=_auth(ADMIN))).json()  # fmt: skip
    assert len(first["data"]) == len(second["data"]) == 2 and first["next_cursor"] and second["next_cursor"]
    ids = [t["trace_id"] for t in first["data"] + second["data"]]
    assert len(set(ids)) == 4 and [t["trace_id"] for t in await _listed(http, q=marker, limit=4)] == ids


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "201"), ("limit", "ten"), ("since", "yesterday"), ("since", "2025-01-01T00:00:00"),
     ("until", "-5"), ("status", "failed"), ("min_duration_ms", "slow"), ("max_duration_ms", "nan"),
     ("min_tokens", "1.5"), ("min_tokens", "99999999999999999999"), ("cursor", "not-a-cursor"), ("q", "")],
)  # fmt: skip
async def test_a_bad_filter_value_is_a_400_naming_its_parameter(stack: Any, param: str, value: str) -> None:
    _, http = stack
    response = await http.get("/v1/traces", params={param: value}, headers=_auth(ADMIN))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_an_unknown_trace_is_a_404_trace_not_found(stack: Any) -> None:
    _, http = stack
    for trace_id in (uuid.uuid4().hex, "not-even-hex"):
        response = await http.get(f"/v1/traces/{trace_id}", headers=_auth(ADMIN))
        assert response.status_code == 404 and response.json()["error"]["code"] == "trace_not_found"


async def test_a_key_sees_and_sends_only_its_own_tenants_traces(stack: Any) -> None:
    _, http = stack
    marker = uuid.uuid4().hex
    alices, alice_trace = _exported(f"{marker} alice", tenant="globex")  # claims another tenant: stamped acme
    bobs, bob_trace = _exported(f"{marker} bob")
    assert (await http.post("/v1/traces", content=alices, headers={**PROTOBUF, **_auth(ALICE)})).status_code == 200
    assert (await http.post("/v1/traces", content=bobs, headers={**PROTOBUF, **_auth(BOB)})).status_code == 200
    assert {t["trace_id"]: t["tenant"] for t in await _listed(http, ADMIN, q=marker)} == {
        alice_trace: "acme", bob_trace: "globex"}  # fmt: skip
    assert [t["trace_id"] for t in await _listed(http, ALICE, q=marker)] == [alice_trace]
    assert [t["trace_id"] for t in await _listed(http, BOB, q=marker)] == [bob_trace]
    assert await _listed(http, ALICE, q=marker, tenant="globex") == []
    assert len(await _listed(http, ALICE, q=marker, tenant="acme")) == 1
    hidden = await http.get(f"/v1/traces/{bob_trace}", headers=_auth(ALICE))
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "trace_not_found"
    assert (await http.get(f"/v1/traces/{bob_trace}", headers=_auth(BOB))).status_code == 200
    # a span into another tenant's trace would hand it over: refused, the trace unchanged
    intruder = _json_export(traceId=alice_trace, spanId="0123456789abcdef", name="mine now", startTimeUnixNano="1")
    refused = await http.post("/v1/traces", content=intruder, headers={**JSON, **_auth(BOB)})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert len((await http.get(f"/v1/traces/{alice_trace}", headers=_auth(ALICE))).json()["spans"]) == 2
    assert (await http.get("/v1/traces", params={"q": marker})).status_code == 401  # no key: no traces
