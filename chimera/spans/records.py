"""What every span store does to a span record: check its shape, cut long values, and read off the facts a trace
summary is made of (and summarize a trace from them)."""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chimera.spans.store import TRACE_ID, InvalidSpanError, TraceSummary

SPAN_ID = re.compile(r"[0-9a-f]{16}")
STATUSES = frozenset({"UNSET", "OK", "ERROR"})
SESSION_KEYS = ("chimera.session", "gen_ai.conversation.id", "session.id")  # ours, GenAI's, OpenInference's


def checked(record: Mapping[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of `record` with string values over `max_chars` cut (with a marker saying how much), lone surrogates
    replaced and non-finite numbers as text, so that it is valid UTF-8 JSON.

    Raises:
        InvalidSpanError: a missing field, or one of the wrong type or form.
    """
    try:
        trace_id, span_id, parent_id = record["trace_id"], record["span_id"], record["parent_id"]
        name, start_ns, end_ns, status = record["name"], record["start_ns"], record["end_ns"], record["status"]
        attributes, resource = record["attributes"], record["resource"]
    except (KeyError, TypeError) as e:
        raise InvalidSpanError(f"a span record needs {e}") from e
    if not (isinstance(trace_id, str) and TRACE_ID.fullmatch(trace_id)):
        raise InvalidSpanError(f"trace_id must be 32 lowercase hex digits, not {trace_id!r:.80}")
    for field, value in (("span_id", span_id), ("parent_id", parent_id)):
        if not (isinstance(value, str) and SPAN_ID.fullmatch(value)) and not (field == "parent_id" and value is None):
            raise InvalidSpanError(f"{field} must be 16 lowercase hex digits, not {value!r:.80}")
    if not isinstance(name, str):
        raise InvalidSpanError("name must be a string")
    for field, value in (("start_ns", start_ns), ("end_ns", end_ns)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidSpanError(f"{field} must be a non-negative integer")
    if status not in STATUSES:
        raise InvalidSpanError(f"status must be one of {', '.join(sorted(STATUSES))}")
    if not isinstance(attributes, Mapping) or not isinstance(resource, Mapping):
        raise InvalidSpanError("attributes and resource must be objects")
    return {"trace_id": trace_id, "span_id": span_id, "parent_id": parent_id, "name": _cut(name, max_chars),
            "start_ns": start_ns, "end_ns": max(end_ns, start_ns), "status": status,
            "attributes": _cut(attributes, max_chars), "resource": _cut(resource, max_chars)}  # fmt: skip


def _cut(value: Any, max_chars: int) -> Any:
    if isinstance(value, str):
        if len(value) <= max_chars and value.isascii():
            return value
        value = _clean(value)
        if len(value) <= max_chars:
            return value
        return f"{value[:max_chars]}…[truncated {len(value) - max_chars} chars]"
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN or infinity
        return str(value)
    if isinstance(value, list | tuple):
        return [_cut(v, max_chars) for v in value]
    if isinstance(value, Mapping):
        return {_clean(str(k)): _cut(v, max_chars) for k, v in value.items()}
    return value


def _clean(text: str) -> str:
    """`text` without lone surrogates (no UTF-8 file, log or JSON reply can hold them): each becomes "?"."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class SpanFacts:
    """What one span contributes to its trace's summary (a store keeps these beside the record)."""

    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    error: bool
    model: str | None
    llm_model: str | None
    route_expert: str | None
    expert: str | None
    session: str | None
    tenant: str | None
    task: str | None
    input_tokens: int | None
    output_tokens: int | None
    process: str


def facts(record: Mapping[str, Any]) -> SpanFacts:
    """The summary facts of a `checked` record."""
    a, r = record["attributes"], record["resource"]
    role = r.get("chimera.process.role") or r.get("service.name") or "?"
    return SpanFacts(
        span_id=record["span_id"],
        parent_id=record["parent_id"],
        name=record["name"],
        start_ns=record["start_ns"],
        end_ns=record["end_ns"],
        error=record["status"] == "ERROR",
        model=_text(a.get("chimera.model")),
        llm_model=_text(a.get("gen_ai.request.model") or a.get("gen_ai.response.model")),
        route_expert=_text(a.get("chimera.route.expert")),
        expert=_text(a.get("chimera.expert")),
        session=next((_text(a[k]) for k in SESSION_KEYS if a.get(k)), None),
        tenant=_text(a.get("chimera.tenant")),
        task=_text(a.get("chimera.task.id")),
        input_tokens=_count(a.get("gen_ai.usage.input_tokens")),
        output_tokens=_count(a.get("gen_ai.usage.output_tokens")),
        process=f"{role} {r.get('process.pid', '?')}",
    )


def search_text(record: Mapping[str, Any]) -> str:
    """What `TraceQuery.text` is looked for in: the span's name and string attribute values, case-folded."""
    return "\n".join([record["name"], *_strings(record["attributes"].values())]).casefold()


def _strings(values: Iterable[Any]) -> Iterable[str]:
    for v in values:
        if isinstance(v, str):
            yield v
        elif isinstance(v, list | tuple):
            yield from _strings(v)
        elif isinstance(v, Mapping):
            yield from _strings(v.values())


def summarize(trace_id: str, spans: list[SpanFacts]) -> TraceSummary:
    """The summary of a trace from the facts of its stored spans (at least one)."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    root = next((s for s in ordered if s.parent_id is None), ordered[0])
    reporting = {s.span_id for s in spans if s.input_tokens is not None or s.output_tokens is not None}
    counted = [s for s in spans if s.parent_id not in reporting]  # a nested span repeats its caller's usage
    start, end = ordered[0].start_ns, max(s.end_ns for s in spans)
    return TraceSummary(
        trace_id=trace_id,
        root_name=root.name,
        start_ns=start,
        end_ns=end,
        duration_ms=(end - start) / 1e6,
        span_count=len(spans),
        error=any(s.error for s in spans),
        model=_first(s.model for s in ordered) or _first(s.llm_model for s in ordered),
        expert=_first(s.route_expert for s in ordered) or _first(s.expert for s in ordered),
        session=_first(s.session for s in ordered),
        tenant=_first(s.tenant for s in ordered),
        task=_first(s.task for s in ordered),
        input_tokens=sum(s.input_tokens or 0 for s in counted),
        output_tokens=sum(s.output_tokens or 0 for s in counted),
        processes=sorted({s.process for s in spans}),
    )


def summary_of(trace_id: str, records: list[dict[str, Any]]) -> TraceSummary:
    """The summary of a trace from its stored records (at least one), as `SpanStore.traces` lists it."""
    return summarize(trace_id, [facts(r) for r in records])


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
