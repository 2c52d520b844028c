"""The API's side of tasks: check a submission, store and enqueue it, and read, cancel, resume or delete tasks
for their owner. The HTTP routes (`chimera/api/task_routes.py`) only translate to and from the wire."""

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chimera.agents.runs import GRAPHS
from chimera.chat import AGENT_GRAPHS, UnknownModelError, served_models
from chimera.identity.audit import audit
from chimera.identity.principal import Principal
from chimera.memory.sessions.base import SessionNotFoundError, SessionStore, check_session_id
from chimera.tasks.inputs import AgentInput, parse_input
from chimera.tasks.model import (
    KINDS,
    PRIORITIES,
    InvalidTaskError,
    TaskEvent,
    TaskInputTooLargeError,
    TaskPermissionError,
    TaskRecord,
)
from chimera.tasks.queue import TaskQueue, payload_digest

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_METADATA = 16


@dataclass(frozen=True)
class TaskSubmission:
    """What `POST /v1/tasks` asks for, before it is checked."""

    kind: str
    input: object
    model: str | None = None
    session_id: str | None = None
    idempotency_key: str | None = None
    priority: str = "normal"
    metadata: dict[str, str] = field(default_factory=dict)


class TaskService:
    """Submits tasks to the queue and answers for them; never runs one (the workers do)."""

    def __init__(self, queue: TaskQueue, sessions: SessionStore, *, max_input_bytes: int) -> None:
        self.queue = queue
        self.sessions = sessions
        self.max_input_bytes = max_input_bytes

    async def submit(
        self, principal: Principal, submission: TaskSubmission, parent: Context | None = None
    ) -> tuple[TaskRecord, bool]:
        """Check and enqueue; the task, and whether it is new (False: the idempotency key's existing task).

        Raises:
            InvalidTaskError, TaskInputTooLargeError, TaskPermissionError, UnknownModelError, InvalidSessionIdError,
            SessionNotFoundError (another's session), TaskConflictError (idempotency key reused), QueueUnavailableError.
        """
        record = self._checked(principal, submission, parent)
        session = record.session_id if submission.session_id is not None else None
        if session is not None and not await self.sessions.claim(session, principal.id):
            audit("foreign_session", principal.id, context=parent, session=session, action="task")
            raise SessionNotFoundError(f"no session {session}")
        payload = {"kind": record.kind, "input": record.input, "model": record.model, "priority": record.priority,
                   "session_id": submission.session_id, "metadata": record.metadata}  # fmt: skip
        outcome, task_id = await self.queue.submit(record, payload_digest(payload))
        if outcome == "existing":
            return await self.queue.get(task_id, principal), False
        audit("task_submitted", principal.id, context=parent, task=record.id, kind=record.kind)
        return record, True

    def _checked(self, principal: Principal, s: TaskSubmission, parent: Context | None) -> TaskRecord:
        if s.kind not in KINDS:
            raise InvalidTaskError(f"unknown task kind {s.kind!r}; kinds: {', '.join(KINDS)}", "kind", "invalid_kind")
        kind = s.kind
        if len(json.dumps(s.input, ensure_ascii=False).encode()) > self.max_input_bytes:
            raise TaskInputTooLargeError(
                f"input is larger than {self.max_input_bytes} bytes", "input", "input_too_large"
            )
        if kind != "agent" and not principal.is_admin:
            raise TaskPermissionError(f"{kind} tasks read the server's files: they need an admin key")
        if kind != "agent" and (s.model is not None or s.session_id is not None):
            raise InvalidTaskError(f"{kind} tasks take no model or session_id", "model", "invalid_value")
        parsed = parse_input(kind, s.input)
        model = None
        if isinstance(parsed, AgentInput):
            model = s.model or "chimera"
            if model not in served_models():
                raise UnknownModelError(f"The model `{model}` does not exist. Available: {', '.join(served_models())}")
            _check_interrupts(model, parsed.interrupt_before)
        if s.idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(s.idempotency_key):
            raise InvalidTaskError("idempotency_key must be 1-128 characters of A-Z a-z 0-9 . _ : -",
                                   "idempotency_key", "invalid_idempotency_key")  # fmt: skip
        if s.priority not in PRIORITIES:
            raise InvalidTaskError(f"priority must be one of {', '.join(PRIORITIES)}", "priority", "invalid_value")
        _check_metadata(s.metadata)
        task_id = uuid.uuid4().hex
        session = check_session_id(s.session_id) if s.session_id else (f"task-{task_id}" if model else None)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=parent)
        return TaskRecord(
            id=task_id,
            kind=kind,
            owner=principal,
            input=parsed.model_dump(mode="json", exclude_none=True),
            model=model,
            session_id=session,
            priority=s.priority,
            metadata=dict(s.metadata),
            idempotency_key=s.idempotency_key,
            created_at=time.time(),
            traceparent=carrier.get("traceparent"),
        )

    async def get(self, task_id: str, principal: Principal) -> TaskRecord:
        return await self.queue.get(task_id, principal)

    async def owned(
        self, principal: Principal, *, status: str | None, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """A page of the principal's tasks, newest first, and the next page's cursor."""
        before = None
        if cursor is not None:
            try:
                before = float(cursor)
            except ValueError as e:
                raise InvalidTaskError(
                    f"cursor {cursor!r} is not a cursor this API gave", "cursor", "invalid_cursor"
                ) from e
        records, next_before = await self.queue.owned(principal, status=status, kind=kind, limit=limit, before=before)
        return records, None if next_before is None else repr(next_before)

    async def cancel(self, task_id: str, principal: Principal) -> TaskRecord:
        audit("task_cancelled", principal.id, task=task_id)
        return await self.queue.cancel(task_id, principal)

    async def resume(self, task_id: str, principal: Principal, *, approve: bool) -> TaskRecord:
        audit("task_resumed", principal.id, task=task_id, approve=approve)
        return await self.queue.resume(task_id, principal, approve=approve)

    async def delete(self, task_id: str, principal: Principal) -> None:
        await self.queue.delete(task_id, principal)

    async def events(self, task_id: str, principal: Principal, *, after: str | None) -> AsyncIterator[TaskEvent | None]:
        """The task's events after `after`, then live ones until the terminal event (None: a quiet interval)."""
        return await self.queue.follow(task_id, principal, after=after)

    async def close(self) -> None:
        await self.queue.close()


def _check_interrupts(model: str, interrupt_before: tuple[str, ...] | None) -> None:
    if not interrupt_before:
        return
    graph = AGENT_GRAPHS.get(model)
    if graph is None:
        raise InvalidTaskError(f"interrupt_before needs an agent model ({', '.join(AGENT_GRAPHS)})",
                               "input.interrupt_before", "invalid_value")  # fmt: skip
    unknown = [n for n in interrupt_before if n not in GRAPHS[graph].nodes]
    if unknown:
        raise InvalidTaskError(f"interrupt_before: {', '.join(unknown)} is not a node of the {graph} graph "
                               f"(nodes: {', '.join(GRAPHS[graph].nodes)})", "input.interrupt_before",
                               "invalid_value")  # fmt: skip


def _check_metadata(metadata: object) -> None:
    entries = list(metadata.items()) if isinstance(metadata, dict) else None
    ok = entries is not None and len(entries) <= MAX_METADATA
    ok = ok and all(isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 64 and len(v) <= 512
                    for k, v in entries or ())  # fmt: skip
    if not ok:
        raise InvalidTaskError(f"metadata must map at most {MAX_METADATA} keys (1-64 characters) to strings of at "
                               "most 512 characters", "metadata", "invalid_value")  # fmt: skip
