"""Durable tasks: POST /v1/tasks, GET /v1/tasks[/{id}], cancel, resume, DELETE, and GET /v1/tasks/{id}/events (SSE)."""

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace

from chimera.api.chat_routes import failed
from chimera.api.errors import APIError, to_api_error
from chimera.api.protocol import TaskCreateRequest, TaskResumeRequest, error_payload
from chimera.api.requests import decode_body, read_body
from chimera.cluster.tracing import trace_id_hex
from chimera.errors import ChimeraError
from chimera.tasks.model import KINDS, TaskEvent
from chimera.tasks.service import TaskService, TaskSubmission

router = APIRouter()
_tracer = trace.get_tracer("chimera.api")
STATUSES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")


def _tasks(request: Request) -> TaskService:
    service: TaskService = request.app.state.tasks
    return service


@router.post("/v1/tasks", status_code=202, responses={200: {"description": "The idempotency key's existing task."}})
async def submit(request: Request) -> JSONResponse:
    """Queue a task (202), or return the existing one for a repeated idempotency key and payload (200)."""
    principal = request.state.principal
    span = _tracer.start_span(
        "POST /v1/tasks",
        kind=trace.SpanKind.SERVER,
        attributes={"chimera.principal": principal.id, "chimera.tenant": principal.tenant},
    )
    try:
        wire = decode_body(await read_body(request, request.app.state.limits), TaskCreateRequest)
        limiter = request.app.state.limiter
        await limiter.release(await limiter.admit(principal), 0)  # a submission counts as a request (429 above)
        submission = TaskSubmission(wire.kind, wire.input, wire.model, wire.session_id, wire.idempotency_key,
                                    wire.priority, wire.metadata)  # fmt: skip
        record, new = await _tasks(request).submit(principal, submission, trace.set_span_in_context(span))
    except Exception as e:
        raise failed(span, e) from e
    span.set_attributes({"chimera.task.id": record.id, "chimera.task.kind": record.kind, "chimera.task.new": new})
    for attribute, value in (("chimera.session", record.session_id), ("chimera.model", record.model)):
        if value:  # the trace list filters by them
            span.set_attribute(attribute, value)
    span.end()
    headers = {"location": f"/v1/tasks/{record.id}", "x-chimera-trace-id": trace_id_hex(span)}
    return JSONResponse(record.as_public(), status_code=202 if new else 200, headers=headers)


@router.get("/v1/tasks")
async def list_tasks(
    request: Request, status: str | None = None, kind: str | None = None, limit: int = 20, cursor: str | None = None
) -> dict[str, Any]:
    """The caller's tasks, newest first; `next_cursor` fetches the next page."""
    if status is not None and status not in STATUSES:
        raise APIError(400, f"status must be one of {', '.join(STATUSES)}", param="status", code="invalid_value")
    if kind is not None and kind not in KINDS:
        raise APIError(400, f"kind must be one of {', '.join(KINDS)}", param="kind", code="invalid_value")
    if not 1 <= limit <= 100:
        raise APIError(400, "limit must be between 1 and 100", param="limit", code="invalid_value")
    records, next_cursor = await _tasks(request).owned(
        request.state.principal, status=status, kind=kind, limit=limit, cursor=cursor
    )
    return {"object": "list", "data": [r.as_public() for r in records], "next_cursor": next_cursor}


@router.get("/v1/tasks/{task_id}")
async def get_task(task_id: str, request: Request) -> dict[str, Any]:
    """The task: status, attempt, timings, and its result or error once it has ended."""
    return (await _tasks(request).get(task_id, request.state.principal)).as_public()


@router.post("/v1/tasks/{task_id}/cancel")
async def cancel(task_id: str, request: Request) -> dict[str, Any]:
    """Cancel (idempotent): a queued or paused task at once, a running one at its next step."""
    return (await _tasks(request).cancel(task_id, request.state.principal)).as_public()


@router.post("/v1/tasks/{task_id}/resume")
async def resume(task_id: str, request: Request) -> dict[str, Any]:
    """Approve (or decline) a paused agent task's pending work; it is queued again and goes on from there."""
    body = await read_body(request, request.app.state.limits)
    wire = decode_body(body, TaskResumeRequest) if body.strip() else TaskResumeRequest()
    return (await _tasks(request).resume(task_id, request.state.principal, approve=wire.approve)).as_public()


@router.delete("/v1/tasks/{task_id}")
async def delete(task_id: str, request: Request) -> dict[str, Any]:
    """Forget a finished task's result and events."""
    await _tasks(request).delete(task_id, request.state.principal)
    return {"id": task_id, "object": "task.deleted", "deleted": True}


@router.get(
    "/v1/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Events."}},
)
async def events(task_id: str, request: Request, after: str | None = None) -> StreamingResponse:
    """Server-sent events from the cursor (`Last-Event-ID`, or `after`) on, or from the start; the stream ends after
    the task's one terminal event."""
    cursor = request.headers.get("last-event-id") or after
    stream = await _tasks(request).events(task_id, request.state.principal, after=cursor)
    return StreamingResponse(_sse(stream), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})  # fmt: skip


async def _sse(stream: AsyncIterator[TaskEvent | None]) -> AsyncIterator[str]:
    try:
        async for event in stream:
            if event is None:
                yield ": keep-alive\n\n"
                continue
            yield f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.as_public())}\n\n"
    except ChimeraError as e:  # after the headers: the error is the stream's last event (no id: not a cursor)
        error = to_api_error(e)
        yield f"event: error\ndata: {json.dumps(error_payload(error.message, error.type, code=error.code))}\n\n"
