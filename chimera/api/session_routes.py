"""Agent runs of a session: GET /v1/sessions/{id}/run (status), POST /v1/sessions/{id}/resume (go on)."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from opentelemetry import trace

from chimera.agents.runs import RunStatus
from chimera.api.chat_routes import counted, failed, metered, respond
from chimera.api.deadlines import Deadline
from chimera.api.protocol import ResumeRequest
from chimera.api.requests import decode_body, read_body
from chimera.chat import ChatService
from chimera.config import ServerConfig
from chimera.identity.limits import Limiter
from chimera.identity.principal import Principal

router = APIRouter()
_tracer = trace.get_tracer("chimera.api")


@router.get("/v1/sessions/{session_id}/run")
async def run_status(session_id: str, request: Request) -> dict[str, Any]:
    """The session's last agent run: `none`, `done`, or `paused` (`reason`: approval, or interrupted)."""
    service: ChatService = request.app.state.service
    return run_json(await service.run_status(session_id, request.state.principal))


def run_json(status: RunStatus) -> dict[str, Any]:
    """A run's status as the API writes it (here and in GET /v1/sessions/{id})."""
    return {"session": status.session, "status": status.status, "graph": status.graph, "next": list(status.next),
            "pending": [p.as_dict() for p in status.pending], "reason": status.reason}  # fmt: skip


@router.post("/v1/sessions/{session_id}/resume")
async def resume(session_id: str, request: Request) -> Response:
    """Approve (or decline) a paused run, or continue one a restart cut short; answers like the chat endpoint."""
    service: ChatService = request.app.state.service
    limits: ServerConfig = request.app.state.limits
    principal: Principal = request.state.principal
    limiter: Limiter = request.app.state.limiter
    span = _tracer.start_span("POST /v1/sessions/resume", kind=trace.SpanKind.SERVER)
    deadline = Deadline.of(request)
    try:
        async with deadline.enforced():
            wire = _parse(await read_body(request, limits))
            span.set_attributes({"chimera.session": session_id, "chimera.approve": wire.approve,
                                 "chimera.principal": principal.id, "chimera.tenant": principal.tenant})  # fmt: skip
            parent = trace.set_span_in_context(span)
            chat = await metered(
                limiter, principal, lambda: service.resume(session_id, principal, approve=wire.approve, parent=parent)
            )
    except Exception as e:
        raise counted(request, "unknown", failed(span, e)) from e  # the run's model is known once it starts
    include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
    return await respond(request, deadline.bound(chat), chat.model, span, stream=wire.stream,
                         include_usage=include_usage)  # fmt: skip


def _parse(body: bytes) -> ResumeRequest:
    """An empty body means approve; anything else must be a valid `ResumeRequest` (400 otherwise)."""
    return decode_body(body, ResumeRequest) if body.strip() else ResumeRequest()
