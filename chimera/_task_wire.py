"""What the task SDK's blocking and asyncio clients share: the typed errors, the task and event records, the
request bodies, the error mapping, and `EventStream` (Server-Sent Events parsing with its reconnect policy: resume
from the last event id, so no gap, no duplicate)."""

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from chimera.client import ClientError

TaskKind = Literal["agent", "ingest", "eval"]
Priority = Literal["high", "normal", "low"]
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_RECONNECTS = 8  # consecutive failed stream requests (refused, unreachable) before `events` gives up
PAGE_MAX = 100  # the largest `limit` one list request may ask for


class TaskNotFound(ClientError):
    """No such task (or one another key owns)."""


class TaskExpired(ClientError):
    """The task finished longer ago than the server keeps results: its result and events are gone."""


class TaskConflict(ClientError):
    """The task's state refuses the request (resume of a task not paused, delete of one not finished), or an
    idempotency key was reused with another payload; `code` says which."""


class TaskTimeout(ClientError, TimeoutError):
    """`wait` or `result` gave up before the task finished (the task goes on)."""


class TaskFailed(ClientError):
    """The task ended without a result; `error` is the remote `{"code", "message"}`, `task` the final record."""

    def __init__(self, task: "TaskInfo") -> None:
        self.error: dict[str, Any] = task.error or {}
        self.task = task
        code, message = self.error.get("code", task.status), self.error.get("message", "")
        super().__init__(f"task {task.id} {task.status}: {code}: {message}", code=code)


class TaskCancelled(TaskFailed):
    """The task was cancelled before it finished."""


@dataclass(frozen=True)
class TaskInfo:
    """A task as the server last described it."""

    id: str
    kind: str
    status: str  # queued, running, paused, succeeded, failed, cancelled
    model: str | None = None
    session_id: str | None = None
    priority: str = "normal"
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    attempt: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {"code", "message"} once failed or cancelled
    cancel_requested: bool = False
    pending: tuple[dict[str, Any], ...] = ()  # a paused task's work awaiting approval (see `resume`)
    owner: str | None = None
    tenant: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the task has finished (succeeded, failed or cancelled)."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "TaskInfo":
        """The task object of the API (fields it does not know are ignored)."""
        known = {name: body[name] for name in cls.__dataclass_fields__ if name in body}
        return cls(**{**known, "pending": tuple(body.get("pending") or ()), "metadata": body.get("metadata") or {}})


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's event stream; `id` is the cursor to resume after."""

    id: str
    type: str  # queued, started, progress, delta, tool_call, tool_result, paused, resumed, retry, … or terminal
    attempt: int
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """Whether this is the stream's last event (succeeded, failed or cancelled)."""
        return self.type in TERMINAL


def submit_body(kind: str, input: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The `POST /v1/tasks` body; options left `None` are not sent."""
    return {"kind": kind, "input": input, **{k: v for k, v in options.items() if v is not None}}


def task_path(task_id: str, action: str = "") -> str:
    """`/v1/tasks/{id}` or `/v1/tasks/{id}/{action}`, the id escaped."""
    return f"/v1/tasks/{quote(task_id, safe='')}" + (f"/{action}" if action else "")


def typed_error(status: int | None, message: str, code: str | None) -> ClientError:
    """The error for an OpenAI-shaped error JSON, answered with HTTP `status` (None: sent in an event stream)."""
    text = f"HTTP {status}: {message}" if status else message
    if code == "task_not_found":
        return TaskNotFound(text, status or 404, code=code)
    if code == "task_expired" or status == 410:
        return TaskExpired(text, status or 410, code=code)
    if status == 409:
        return TaskConflict(text, status, code=code)
    return ClientError(text, status, code=code)


def error_from_response(response: httpx.Response) -> ClientError:
    """The typed error for a refused request (its body already read)."""
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError):
        message, code = response.text, None
    return typed_error(response.status_code, message, code)


def unreachable(http: httpx.Client | httpx.AsyncClient, e: httpx.HTTPError) -> ClientError:
    """The error for a request that got no answer."""
    return ClientError(f"no Chimera server at {http.base_url}: {e}")


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer; the typed error otherwise."""
    if not response.is_success:
        raise error_from_response(response)
    return response.json()


def result_of(info: TaskInfo) -> dict[str, Any]:
    """A finished task's result; `TaskFailed` or `TaskCancelled` carrying the remote error otherwise."""
    if info.status == "cancelled":
        raise TaskCancelled(info)
    if info.status != "succeeded":
        raise TaskFailed(info)
    return info.result or {}


def list_params(status: str | None, kind: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """The query of one `GET /v1/tasks` page; filters left `None` are not sent."""
    given = {"status": status, "kind": kind, "limit": min(limit, PAGE_MAX), "cursor": cursor}
    return {k: v for k, v in given.items() if v is not None}


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic time a wait of `timeout` seconds ends (`None`: never)."""
    return None if timeout is None else time.monotonic() + timeout


def check_deadline(deadline: float | None, task_id: str) -> None:
    """Raise `TaskTimeout` once `deadline` has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise TaskTimeout(f"task {task_id} did not finish in time")


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One blocking request: its JSON, or the typed error."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        raise unreachable(http, e) from e
    return answer(response)


async def acall(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One asyncio request: its JSON, or the typed error."""
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        raise unreachable(http, e) from e
    return answer(response)


class EventStream:
    """One follower of a task's events across connections: parses SSE lines, keeps the cursor, and says how long
    to wait before reconnecting (or raises when it should not)."""

    def __init__(self, task_id: str, after: str | None, deadline: float | None = None) -> None:
        self.path = task_path(task_id, "events")
        self.task_id, self.cursor, self.deadline = task_id, after, deadline
        self.failures = 0
        self._fields: dict[str, list[str]] = {}

    def request(self, timeout: httpx.Timeout) -> dict[str, Any]:
        """The keyword arguments of the next `GET …/events`: the cursor header, and a read timeout that ends
        no later than the deadline."""
        headers = {"accept": "text/event-stream", **({"last-event-id": self.cursor} if self.cursor else {})}
        read = timeout.read
        if self.deadline is not None:
            read = max(0.01, min(read or float("inf"), self.deadline - time.monotonic()))
        return {"headers": headers, "timeout": httpx.Timeout(timeout.connect, read=read, write=timeout.write,
                                                             pool=timeout.pool)}  # fmt: skip

    def feed(self, line: str) -> TaskEvent | None:
        """Take one line of the stream; the event it completes, if any. Raises `TaskTimeout` past the deadline."""
        self.check_deadline()
        if line.startswith(":"):  # a keep-alive comment
            return None
        if line:
            name, _, value = line.partition(":")
            self._fields.setdefault(name, []).append(value.removeprefix(" "))
            return None
        fields, self._fields = self._fields, {}
        if "data" not in fields:
            return None
        try:
            payload = json.loads("\n".join(fields["data"]))
        except ValueError as e:
            raise ClientError(f"task {self.task_id}: malformed event {fields['data']!r}") from e
        if isinstance(error := payload.get("error"), dict):  # the server's last word on a stream it cannot go on with
            if error.get("type") == "service_unavailable":
                return None  # it closes the stream next; `dropped` reconnects after a backoff
            raise typed_error(None, f"task {self.task_id}: {error.get('message')}", error.get("code"))
        event = TaskEvent(
            id=str(payload.get("id") or fields.get("id", [""])[-1]),
            type=str(payload.get("type") or fields.get("event", ["message"])[-1]),
            attempt=int(payload.get("attempt") or 0),
            data=payload.get("data") or {},
        )
        self.cursor = event.id or self.cursor
        return event

    def connected(self) -> None:
        """The server accepted a stream request: it is there and the task exists, so a drop from now on starts the
        backoff over (a long quiet stream may be cut by a proxy or the server many times)."""
        self.failures = 0

    def dropped(self, error: Exception | None) -> float:
        """The connection ended before the terminal event (`error`: why, if it broke): seconds to wait before
        reconnecting from the cursor. Raises `TaskTimeout` past the deadline, `ClientError` when it keeps failing."""
        self.check_deadline()
        self._fields = {}  # an event cut in half is sent again after the cursor
        self.failures += 1
        if self.failures > MAX_RECONNECTS:
            raise ClientError(f"task {self.task_id}: no event stream after {self.failures} tries") from error
        return self._bounded(min(0.2 * 2 ** (self.failures - 1), 5.0))

    def refused(self, response: httpx.Response) -> float:
        """The server answered the stream request with an error (body read): seconds to wait when it asks to
        retry (429, 503 with Retry-After), else the typed error is raised."""
        if response.status_code not in (429, 503):
            raise error_from_response(response)
        self.check_deadline()
        self.failures += 1
        if self.failures > MAX_RECONNECTS:
            raise error_from_response(response)
        try:
            return self._bounded(float(response.headers.get("retry-after", "1")))
        except ValueError:
            return self._bounded(1.0)

    def check_deadline(self) -> None:
        check_deadline(self.deadline, self.task_id)

    def _bounded(self, delay: float) -> float:
        return delay if self.deadline is None else max(0.0, min(delay, self.deadline - time.monotonic()))
