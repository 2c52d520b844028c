"""The query parameters of GET /v1/traces, read into a `TraceQuery`; a value of the wrong type is a 400 naming it.

Times (`since`, `until`) are unix nanoseconds (digits) or ISO 8601 with a time zone (`2025-01-31T12:00:00Z`).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from chimera.api.errors import APIError
from chimera.spans.store import MAX_LIMIT, InvalidTraceQueryError, TraceQuery, TraceStatus

_TIME = {"type": "string", "pattern": r"^([0-9]+|[0-9]{4}-.+)$"}
PARAMS: dict[str, tuple[str, dict[str, Any]]] = {  # query parameter: (description, JSON schema) for OpenAPI
    "since": ("Traces that started at or after: unix nanoseconds, or ISO 8601 with a time zone.", _TIME),
    "until": ("Traces that started at or before: unix nanoseconds, or ISO 8601 with a time zone.", _TIME),
    "model": ("The model the request asked for (or the LLM's, for spans from elsewhere).", {"type": "string"}),
    "expert": ("The expert the router chose (or that generated).", {"type": "string"}),
    "session": ("The session (`x-session-id`).", {"type": "string"}),
    "tenant": ("The tenant (an admin key sees every tenant's traces; any other key only its own).",
               {"type": "string"}),
    "task": ("The task id.", {"type": "string"}),
    "status": ("`error`: traces with a failed span; `ok`: the others.", {"type": "string", "enum": ["ok", "error"]}),
    "min_duration_ms": ("Traces lasting at least this many milliseconds.", {"type": "number", "minimum": 0}),
    "max_duration_ms": ("Traces lasting at most this many milliseconds.", {"type": "number", "minimum": 0}),
    "min_tokens": ("Traces whose input + output tokens add up to at least this.", {"type": "integer", "minimum": 0}),
    "q": ("Case-insensitive text in a span name or a string attribute value.", {"type": "string", "minLength": 1}),
    "limit": ("Traces per page (default 50).", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    "cursor": ("The previous page's `next_cursor`.", {"type": "string"}),
}  # fmt: skip
_FIELD_PARAMS = {"since_ns": "since", "until_ns": "until", "text": "q"}  # TraceQuery's fields named otherwise


def trace_query(params: dict[str, str | None]) -> TraceQuery:
    """The `TraceQuery` the parameters ask for (absent ones match everything).

    Raises:
        APIError: 400 with `param`, for a value of the wrong type or out of range.
    """
    limit = _integer(params.get("limit"), "limit")
    try:
        return _query(params, limit)
    except InvalidTraceQueryError as e:  # the field's name → the parameter's
        raise APIError(400, str(e), param=_FIELD_PARAMS.get(e.param, e.param), code="invalid_value") from e


def _query(params: dict[str, str | None], limit: int | None) -> TraceQuery:
    return TraceQuery(
        since_ns=_time(params.get("since"), "since"),
        until_ns=_time(params.get("until"), "until"),
        model=params.get("model"),
        expert=params.get("expert"),
        session=params.get("session"),
        tenant=params.get("tenant"),
        task=params.get("task"),
        status=_status(params.get("status")),
        min_duration_ms=_number(params.get("min_duration_ms"), "min_duration_ms"),
        max_duration_ms=_number(params.get("max_duration_ms"), "max_duration_ms"),
        min_tokens=_integer(params.get("min_tokens"), "min_tokens"),
        text=params.get("q"),
        limit=50 if limit is None else limit,
        cursor=params.get("cursor"),
    )


def _time(value: str | None, param: str) -> int | None:
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise _invalid(param, "unix nanoseconds or an ISO 8601 time with a time zone") from e
    if moment.tzinfo is None:
        raise _invalid(param, "an ISO 8601 time with a time zone (Z or +hh:mm)")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _status(value: str | None) -> TraceStatus | None:
    if value is None:
        return None
    if value == "ok":
        return "ok"
    if value == "error":
        return "error"
    raise _invalid("status", "ok or error")


def _number(value: str | None, param: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError as e:
        raise _invalid(param, "a number") from e
    if number != number or number in (float("inf"), float("-inf")):
        raise _invalid(param, "a finite number")
    return number


def _integer(value: str | None, param: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.lstrip("-").isdigit()):
        raise _invalid(param, "an integer")
    return int(value)


def _invalid(param: str, expected: str) -> APIError:
    return APIError(400, f"{param} must be {expected}", param=param, code="invalid_value")
