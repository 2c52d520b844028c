"""The caller's sessions: GET /v1/sessions (paged), GET /v1/sessions/{id} (turns and run), DELETE /v1/sessions/{id}.

Beside session_routes.py (a session's agent run: status and resume). Another key's session answers 404.
"""

from typing import Any

from fastapi import APIRouter, Request

from chimera.api.errors import APIError
from chimera.api.session_routes import run_json
from chimera.sessions import SessionService

router = APIRouter()
PAGE_MAX = 100


def _sessions(request: Request) -> SessionService:
    service: SessionService = request.app.state.sessions
    return service


@router.get("/v1/sessions")
async def list_sessions(request: Request, limit: int = 20, after: str | None = None) -> dict[str, Any]:
    """The caller's sessions, most recently used first; `after` (a session id, the last of a page) pages on.

    One-shot sessions (the server named them) are listed once a request continues them.
    """
    if not 1 <= limit <= PAGE_MAX:
        raise APIError(400, f"limit must be between 1 and {PAGE_MAX}", param="limit", code="invalid_value")
    found, more = await _sessions(request).list(request.state.principal, limit=limit, after=after)
    data = [{"id": s.id, "object": "session", "updated_at": s.updated_at, "messages": s.messages} for s in found]
    first, last = (found[0].id, found[-1].id) if found else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more}


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    """The session's stored turns (oldest first, as the model saw them) and its last agent run."""
    view = await _sessions(request).get(session_id, request.state.principal)
    return {"id": view.id, "object": "session", "messages": [m.model_dump() for m in view.messages],
            "run": run_json(view.run)}  # fmt: skip


@router.delete("/v1/sessions/{session_id}")
async def delete_session(session_id: str, request: Request) -> dict[str, Any]:
    """Forget the session: its turns, its agent run's checkpoints and its long-context memory."""
    await _sessions(request).delete(session_id, request.state.principal)
    return {"id": session_id, "object": "session.deleted", "deleted": True}
