"""The sessions API's service: a principal's sessions listed, one read (its turns and its agent run), one deleted
(its turns, its run's checkpoints and its long-context memory). Another principal's session is unknown (404)."""

from dataclasses import dataclass

from opentelemetry.context import Context

from chimera.agents.runs import AgentRuns, RunStatus
from chimera.identity.audit import audit
from chimera.identity.principal import Principal
from chimera.memory.sessions.base import SessionInfo, SessionNotFoundError, SessionStore, check_session_id
from chimera.messages import ChatMessage


async def owned(
    store: SessionStore, session_id: str, principal: Principal, action: str, parent: Context | None = None
) -> str:
    """`session_id` if `principal` owns it; another's session is as unknown as one that never existed (its
    attempt is audited).

    Raises:
        InvalidSessionIdError, SessionNotFoundError.
    """
    owner = await store.owner(check_session_id(session_id))
    if owner != principal.id:
        if owner is not None:
            audit("foreign_session", principal.id, context=parent, session=session_id, action=action)
        raise SessionNotFoundError(f"no session {session_id}")
    return session_id


@dataclass(frozen=True)
class SessionView:
    """One session as its owner reads it."""

    id: str
    messages: list[ChatMessage]
    run: RunStatus  # the last agent run: none, done or paused


class SessionService:
    """Sessions by owner, on the chat's session store, agent runs and memory."""

    def __init__(self, store: SessionStore, runs: AgentRuns) -> None:
        self.store = store
        self.runs = runs

    async def list(
        self, principal: Principal, *, limit: int, after: str | None = None
    ) -> tuple[list[SessionInfo], bool]:
        """The principal's sessions, most recently used first, and whether more follow `limit` of them.

        Raises:
            UnknownCursorError: `after` is not one of the principal's listed sessions.
        """
        return await self.store.owned_by(principal.id, limit=limit, after=after)

    async def get(self, session_id: str, principal: Principal) -> SessionView:
        """The session's stored turns, oldest first, and its last agent run.

        Raises:
            InvalidSessionIdError, SessionNotFoundError: mapped to HTTP by the API.
        """
        await owned(self.store, session_id, principal, "read_session")
        return SessionView(session_id, await self.store.load(session_id), await self.runs.status(session_id))

    async def delete(self, session_id: str, principal: Principal) -> None:
        """Forget the session: its long-context memory and run checkpoints first, then its turns and owner (a
        failure part way leaves the session owned, so the owner can delete it again).

        Raises:
            InvalidSessionIdError, SessionNotFoundError, SessionError, LongMemoryError, CheckpointError.
        """
        await owned(self.store, session_id, principal, "delete_session")
        if self.runs.memory is not None:
            await self.runs.memory.forget(session_id)
        if self.runs.checkpointer is not None:
            await self.runs.checkpointer.adelete_thread(session_id)
        await self.store.delete(session_id)
        audit("session_deleted", principal.id, session=session_id)
