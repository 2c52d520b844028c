"""A task as the queue, the workers and the API see it: its record, its events, its errors."""

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from chimera.errors import ChimeraError
from chimera.identity.principal import Principal

TaskKind: TypeAlias = Literal["agent", "ingest", "eval"]
TaskStatus: TypeAlias = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]
Priority: TypeAlias = Literal["high", "normal", "low"]
KINDS: tuple[TaskKind, ...] = ("agent", "ingest", "eval")
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")  # served in this order within one tenant
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class TaskError(ChimeraError):
    """A task request could not be done as asked."""


class InvalidTaskError(TaskError):
    """The submitted task is malformed: unknown kind, bad input, a bad idempotency key, priority or metadata."""

    def __init__(self, message: str, param: str = "input", code: str = "invalid_input") -> None:
        super().__init__(message)
        self.param, self.code = param, code


class TaskInputTooLargeError(InvalidTaskError):
    """The task's input is larger than `tasks.max_input_bytes`."""


class TaskPermissionError(TaskError):
    """The caller's role may not submit this kind of task (ingestion and evaluations read server files: admins)."""


class TaskNotFoundError(TaskError):
    """No such task, or one another principal owns (the same answer, so ids reveal nothing)."""


class TaskExpiredError(TaskError):
    """The task finished longer than `tasks.result_ttl_s` ago: its result and events are gone."""


class TaskConflictError(TaskError):
    """A transition the task's state does not allow, or an idempotency key reused with another payload."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code  # idempotency_conflict, task_not_paused, task_not_finished


class InvalidCursorError(TaskError):
    """An event cursor (`Last-Event-ID`, `after`) that is not an event id of this task's stream."""


class TaskRunError(TaskError):
    """A task failed in a way a retry would not change (its input names a missing file, its run was refused)."""


class TaskCancelledError(TaskError):
    """Raised inside a run when its task was cancelled; the worker records the cancellation."""


@dataclass(frozen=True)
class TaskRecord:
    """One task: what was asked, by whom, and how far it got. Stored as one Redis hash."""

    id: str
    kind: TaskKind
    owner: Principal
    input: dict[str, Any]
    status: TaskStatus = "queued"
    model: str | None = None
    session_id: str | None = None
    priority: Priority = "normal"
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    attempt: int = 0  # deliveries so far: 1 on the first run, 2 after a reclaim or retry
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    resume_approve: bool | None = None  # set by `resume`; the next delivery continues the paused run
    pending: list[dict[str, Any]] = field(default_factory=list)  # a paused agent task's work awaiting approval
    traceparent: str | None = None  # the submit span's context: the worker's spans join the submitter's trace

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def as_public(self) -> dict[str, Any]:
        """What the API answers for the task (the owner's key id, never its limits)."""
        return {
            "id": self.id, "object": "task", "kind": self.kind, "status": self.status, "model": self.model,
            "session_id": self.session_id, "priority": self.priority, "metadata": self.metadata,
            "idempotency_key": self.idempotency_key, "attempt": self.attempt, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at, "result": self.result,
            "error": self.error, "cancel_requested": self.cancel_requested, "pending": self.pending,
            "owner": self.owner.id, "tenant": self.owner.tenant,
        }  # fmt: skip

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields; JSON where the value is not a plain string."""
        return {
            "id": self.id, "kind": self.kind, "owner": json.dumps(self.owner.as_record()), "owner_id": self.owner.id,
            "input": json.dumps(self.input), "status": self.status, "model": self.model or "",
            "session_id": self.session_id or "", "priority": self.priority, "metadata": json.dumps(self.metadata),
            "idempotency_key": self.idempotency_key or "", "attempt": str(self.attempt),
            "created_at": repr(self.created_at), "traceparent": self.traceparent or "",
        }  # fmt: skip

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> "TaskRecord":
        h = {k.decode(): v.decode() for k, v in raw.items()}

        def number(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        def loaded(name: str) -> Any:
            return json.loads(h[name]) if h.get(name) else None

        approve = h.get("resume_approve")
        return cls(
            id=h["id"],
            kind=h["kind"],  # type: ignore[arg-type]
            owner=Principal.from_record(json.loads(h["owner"])),
            input=json.loads(h["input"]),
            status=h["status"],  # type: ignore[arg-type]
            model=h.get("model") or None,
            session_id=h.get("session_id") or None,
            priority=h.get("priority", "normal"),  # type: ignore[arg-type]
            metadata=loaded("metadata") or {},
            idempotency_key=h.get("idempotency_key") or None,
            attempt=int(h.get("attempt") or 0),
            created_at=float(h["created_at"]),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            result=loaded("result"),
            error=loaded("error"),
            cancel_requested=h.get("cancel_requested") == "1",
            resume_approve=None if not approve else approve == "1",
            pending=loaded("pending") or [],
            traceparent=h.get("traceparent") or None,
        )


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's event stream; `id` is its Redis stream id, the cursor a client resumes from."""

    id: str
    type: str  # queued, started, retry, tool_call, tool_result, delta, progress, paused, resumed, log, + terminal
    data: dict[str, Any]
    attempt: int

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def as_public(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "attempt": self.attempt, "data": self.data}
