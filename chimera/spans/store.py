"""`SpanStore`: the interface every span store implements, and the query and summary types it speaks.

A span record is the JSON shape `chimera.spans.exporter.span_record` writes (and `chimera.spans.otlp` decodes):
`trace_id` (32 hex), `span_id` (16 hex), `parent_id` (16 hex or None), `name`, `start_ns`, `end_ns`, `status`
("UNSET" | "OK" | "ERROR"), `attributes` and `resource` (dicts of attribute values). A store keeps each trace's
summary (`TraceSummary`) up to date as its spans arrive, in any order: a child stored before its parent is kept
and shown, and the summary's root fills in when the parent arrives.
"""

import base64
import binascii
import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chimera.errors import ChimeraError

MAX_LIMIT = 200  # most traces one page may hold
MAX_INT64 = 2**63 - 1  # nanosecond times and counts are 64-bit
TRACE_ID = re.compile(r"[0-9a-f]{32}")
TraceStatus = Literal["ok", "error"]  # a trace is `error` when one of its spans failed


class SpanStoreError(ChimeraError):
    """The store could not read or write (busy beyond its timeout, disk full, closed)."""


class TraceNotFoundError(SpanStoreError):
    """No span of this trace is stored (or, through the API, none the caller may see)."""


class InvalidSpanError(SpanStoreError):
    """A span record lacks a field or has one of the wrong shape; nothing of its batch was stored."""


class InvalidTraceQueryError(SpanStoreError):
    """A query value is out of range; `param` names its `TraceQuery` field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class TraceQuery:
    """Which traces to list, newest first. Every filter left None matches all; the others must all match.

    Times are unix nanoseconds and bound the trace's start (its earliest span). `text` is a case-insensitive
    substring of a span name or of a string attribute value of any span of the trace. `cursor` is a page's
    `next_cursor`, for the page after it.
    """

    since_ns: int | None = None
    until_ns: int | None = None
    model: str | None = None
    expert: str | None = None
    session: str | None = None
    tenant: str | None = None
    task: str | None = None
    status: TraceStatus | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    min_tokens: int | None = None
    text: str | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidTraceQueryError(f"limit must be between 1 and {MAX_LIMIT}", "limit")
        if self.status not in (None, "ok", "error"):
            raise InvalidTraceQueryError("status must be ok or error", "status")
        for name in ("since_ns", "until_ns", "min_duration_ms", "max_duration_ms", "min_tokens"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_INT64:
                raise InvalidTraceQueryError(f"{name} must be between 0 and {MAX_INT64}", name)
        if self.text is not None and not self.text:
            raise InvalidTraceQueryError("text must not be empty", "text")
        if self.cursor is not None:
            decode_cursor(self.cursor)


@dataclass(frozen=True)
class TraceSummary:
    """One trace at a glance, as stored so far.

    `root_name` is the name of the span without a parent, or of the earliest span while the root has not arrived.
    `model` is the model the request asked for (`chimera.model`), else the LLM's (`gen_ai.request.model`);
    `expert` the router's choice (`chimera.route.expert`), else the expert that generated (`chimera.expert`).
    Tokens add up `gen_ai.usage.*` over the spans, leaving out a span nested in one that reports usage itself
    (the engine's span repeats its caller's). `processes` are "role pid" strings, sorted.
    """

    trace_id: str
    root_name: str
    start_ns: int
    end_ns: int
    duration_ms: float
    span_count: int
    error: bool
    model: str | None
    expert: str | None
    session: str | None
    tenant: str | None
    task: str | None
    input_tokens: int
    output_tokens: int
    processes: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (the API's list items)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TracePage:
    """One page of a trace list; `next_cursor` (None on the last page) asks for the next one."""

    items: list[TraceSummary]
    next_cursor: str | None


class SpanStore(ABC):
    """Spans by trace, with summaries to list and filter traces by, and retention."""

    @abstractmethod
    def add(self, spans: Sequence[dict[str, Any]]) -> int:
        """Store span records (all of them, or none when one is invalid); a stored (trace_id, span_id) is replaced.

        String attribute values longer than the store's limit are cut, with "…[truncated N chars]" at the end.

        Returns:
            How many spans were stored.

        Raises:
            InvalidSpanError: a record of the wrong shape.
            SpanStoreError: the store could not write.
        """

    @abstractmethod
    def traces(self, query: TraceQuery) -> TracePage:
        """The summaries of the traces `query` matches, newest start first.

        Raises:
            InvalidTraceQueryError: a cursor this store did not hand out.
        """

    @abstractmethod
    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every stored span of one trace, oldest start first (children whose parent has not arrived included).

        Raises:
            TraceNotFoundError: none is stored.
        """

    @abstractmethod
    def prune(self, now_ns: int | None = None) -> int:
        """Apply retention: delete the traces that started more than `retention_days` before `now_ns` (default:
        now), then the oldest traces while more than `max_spans` spans are stored.

        Returns:
            How many spans were deleted.
        """

    @abstractmethod
    def count(self) -> int:
        """How many spans are stored."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections; it is not used after this."""


def encode_cursor(start_ns: int, trace_id: str) -> str:
    """The opaque cursor that continues a list after the trace (`start_ns`, `trace_id`)."""
    return base64.urlsafe_b64encode(f"{start_ns}:{trace_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(start_ns, trace_id) of a cursor `encode_cursor` made.

    Raises:
        InvalidTraceQueryError: anything else.
    """
    try:
        start, trace_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if not TRACE_ID.fullmatch(trace_id):
            raise ValueError(trace_id)
        return int(start), trace_id
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise InvalidTraceQueryError("cursor is not one this server handed out", "cursor") from e
