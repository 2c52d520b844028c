"""Audit events: who did what to whose data (refused keys, limits hit, foreign sessions, approvals, key changes).

Each is one JSON line on the `chimera.audit` logger and, inside a request, an event on its span, so that the trace
store keeps it beside the request it belongs to. Tokens never appear in them.
"""

import json
import logging

from opentelemetry import trace
from opentelemetry.context import Context

log = logging.getLogger("chimera.audit")


def audit(event: str, principal: str | None, *, context: Context | None = None, **fields: str | int | bool) -> None:
    """Record `event` done by `principal` (None: an unauthenticated caller)."""
    record = {"event": event, "principal": principal or "-", **fields}
    log.info("%s", json.dumps(record, sort_keys=True))
    span = trace.get_current_span(context)
    if span.is_recording():
        span.add_event(f"audit.{event}", {k: v for k, v in record.items() if v is not None})
