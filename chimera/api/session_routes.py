"""Agent runs of a session: GET /v1/sessions/{id}/run (status), POST /v1/sessions/{id}/resume (go on)."""

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from opentelemetry import trace
from pydantic import ValidationError

from chimera.api.chat_routes import failed, respond
from chimera.api.errors import APIError
from chimera.api.protocol import ResumeRequest
from chimera.api.requests import read_body
from chimera.chat import ChatService
from chimera.config import ServerConfig

router = APIRouter()
_tracer = trace.get_tracer("chimera.api")


@router.get("/v1/sessions/{session_id}/run")
async def run_status(session_id: str, request: Request) -> dict[str, object]:
    """The session's last agent run: `none`, `done`, or `paused` (`reason`: approval, or interrupted)."""
    service: ChatService = request.app.state.service
    status = await service.run_status(session_id)
    return {"session": status.session, "status": status.status, "graph": status.graph, "next": list(status.next),
            "pending": [p.as_dict() for p in status.pending], "reason": status.reason}  # fmt: skip


@router.post("/v1/sessions/{session_id}/resume")
async def resume(session_id: str, request: Request) -> Response:
    """Approve (or decline) a paused run, or continue one a restart cut short; answers like the chat endpoint."""
    service: ChatService = request.app.state.service
    limits: ServerConfig = request.app.state.limits
    span = _tracer.start_span("POST /v1/sessions/resume", kind=trace.SpanKind.SERVER)
    try:
        wire = _parse(await read_body(request, limits.max_body_bytes))
        span.set_attributes({"chimera.session": session_id, "chimera.approve": wire.approve})
        chat = await service.resume(session_id, approve=wire.approve, parent=trace.set_span_in_context(span))
    except Exception as e:
        raise failed(span, e) from e
    include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
    return await respond(chat, chat.model, span, stream=wire.stream, include_usage=include_usage)


def _parse(body: bytes) -> ResumeRequest:
    """An empty body means approve; anything else must be a valid `ResumeRequest` (400 otherwise)."""
    if not body.strip():
        return ResumeRequest()
    try:
        return ResumeRequest.model_validate(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, "request body is not valid JSON", code="invalid_json") from e
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from e
