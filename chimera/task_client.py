"""Durable tasks from the Python SDK: submit agent, ingest and eval tasks, follow their events, get their results.

`Tasks` / `Task` block; `AsyncTasks` / `AsyncTask` are the same methods for asyncio. Both are thin shells over
`_task_wire.py`, which holds what they share: the typed errors and records, the request bodies, the error mapping
and the Server-Sent Events parsing with its reconnect policy (resume from the last event id: no gap, no duplicate).
Get them from `chimera.client.Client(...).tasks` or `AsyncClient(...).tasks`.
"""

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from typing import Any

import httpx

from chimera._task_wire import (
    EventStream,
    Priority,
    TaskCancelled,
    TaskConflict,
    TaskEvent,
    TaskExpired,
    TaskFailed,
    TaskInfo,
    TaskKind,
    TaskNotFound,
    TaskTimeout,
    acall,
    call,
    deadline_after,
    list_params,
    result_of,
    submit_body,
    task_path,
)

__all__ = [
    "AsyncTask",
    "AsyncTasks",
    "Priority",
    "Task",
    "TaskCancelled",
    "TaskConflict",
    "TaskEvent",
    "TaskExpired",
    "TaskFailed",
    "TaskInfo",
    "TaskKind",
    "TaskNotFound",
    "TaskTimeout",
    "Tasks",
]


class Task:
    """One task on the server (blocking calls)."""

    def __init__(self, http: httpx.Client, info: TaskInfo) -> None:
        self._http, self.id, self.info = http, info.id, info

    def status(self) -> TaskInfo:
        """The task now (also kept as `info`). Raises `TaskNotFound` or `TaskExpired`."""
        return self._update("GET", "")

    def events(self, after: str | None = None) -> Iterator[TaskEvent]:
        """The task's events from the start (or after the event id `after`) up to and including the terminal one;
        reconnects by itself from the last event seen when the connection drops. A paused task's stream waits."""
        return self._follow(EventStream(self.id, after))

    def wait(self, timeout: float | None = None) -> TaskInfo:
        """Block until the task has finished; its final record. Raises `TaskTimeout` after `timeout` seconds."""
        deadline = deadline_after(timeout)
        if self.status().terminal:
            return self.info
        for _ in self._follow(EventStream(self.id, None, deadline)):
            pass  # it ends after the terminal event, which the server writes together with the final record
        return self.status()

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait, then the result; raises `TaskFailed` / `TaskCancelled` with the remote error."""
        return result_of(self.wait(timeout))

    def cancel(self) -> TaskInfo:
        """Ask the task to stop (idempotent); a queued task is cancelled at once, a running one at its next step."""
        return self._update("POST", "cancel")

    def resume(self, approve: bool = True) -> TaskInfo:
        """Continue a paused task, approving (or declining) its pending work. Raises `TaskConflict` if not paused."""
        return self._update("POST", "resume", json={"approve": approve})

    def delete(self) -> None:
        """Forget a finished task. Raises `TaskConflict` while it has not finished."""
        call(self._http, "DELETE", task_path(self.id))

    def _update(self, method: str, action: str, **kwargs: Any) -> TaskInfo:
        self.info = TaskInfo.from_json(call(self._http, method, task_path(self.id, action), **kwargs))
        return self.info

    def _follow(self, stream: EventStream) -> Iterator[TaskEvent]:
        while True:
            try:
                with self._http.stream("GET", stream.path, **stream.request(self._http.timeout)) as response:
                    if response.status_code != 200:
                        response.read()
                        delay = stream.refused(response)
                    else:
                        stream.connected()
                        for line in response.iter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
                                if event.terminal:
                                    return
                        delay = stream.dropped(None)
            except httpx.TransportError as e:
                delay = stream.dropped(e)
            time.sleep(delay)


class Tasks:
    """The task endpoints of one server (`Client(...).tasks`)."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def submit(self, kind: TaskKind, input: dict[str, Any], *, model: str | None = None,
               session_id: str | None = None, idempotency_key: str | None = None, priority: Priority | None = None,
               metadata: dict[str, str] | None = None) -> Task:  # fmt: skip
        """Queue a task; with an `idempotency_key` already used for the same payload, the existing task.

        Args:
            kind: `agent` (input `{"prompt"}` or `{"messages"}`, optional `interrupt_before`), `ingest` (input
                `{"paths"}`, optional `tenant`, `acl`, `delete`; admin keys only) or `eval` (input `{"eval",
                "data"}`, optional `max_queries`; admin keys only).
            input: what the task works on, as above.
        """
        body = submit_body(kind, input, model=model, session_id=session_id, idempotency_key=idempotency_key,
                           priority=priority, metadata=metadata)  # fmt: skip
        return Task(self._http, TaskInfo.from_json(call(self._http, "POST", "/v1/tasks", json=body)))

    def get(self, task_id: str) -> Task:
        """The task `task_id`. Raises `TaskNotFound` or `TaskExpired`."""
        return Task(self._http, TaskInfo.from_json(call(self._http, "GET", task_path(task_id))))

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 20) -> builtins.list[TaskInfo]:
        """This key's tasks, newest first, at most `limit` of them (fetched a page at a time)."""
        found: builtins.list[TaskInfo] = []
        cursor: str | None = None
        while len(found) < limit:
            params = list_params(status, kind, limit - len(found), cursor)
            page = call(self._http, "GET", "/v1/tasks", params=params)
            found += [TaskInfo.from_json(item) for item in page["data"]]
            if not (cursor := page.get("next_cursor")) or not page["data"]:
                break
        return found[:limit]


class AsyncTask:
    """One task on the server, for asyncio: the methods of `Task`, awaited (`events` is an async iterator)."""

    def __init__(self, http: httpx.AsyncClient, info: TaskInfo) -> None:
        self._http, self.id, self.info = http, info.id, info

    async def status(self) -> TaskInfo:
        """See `Task.status`."""
        return await self._update("GET", "")

    def events(self, after: str | None = None) -> AsyncGenerator[TaskEvent, None]:
        """See `Task.events`; close it (`contextlib.aclosing`) when leaving it before the end."""
        return self._follow(EventStream(self.id, after))

    async def wait(self, timeout: float | None = None) -> TaskInfo:  # noqa: ASYNC109 (the same call as Task.wait)
        """See `Task.wait`; `asyncio.timeout` around it works too."""
        deadline = deadline_after(timeout)
        if (await self.status()).terminal:
            return self.info
        async with aclosing(self._follow(EventStream(self.id, None, deadline))) as events:
            async for _ in events:
                pass
        return await self.status()

    async def result(self, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """See `Task.result`."""
        return result_of(await self.wait(timeout))

    async def cancel(self) -> TaskInfo:
        """See `Task.cancel`."""
        return await self._update("POST", "cancel")

    async def resume(self, approve: bool = True) -> TaskInfo:
        """See `Task.resume`."""
        return await self._update("POST", "resume", json={"approve": approve})

    async def delete(self) -> None:
        """See `Task.delete`."""
        await acall(self._http, "DELETE", task_path(self.id))

    async def _update(self, method: str, action: str, **kwargs: Any) -> TaskInfo:
        self.info = TaskInfo.from_json(await acall(self._http, method, task_path(self.id, action), **kwargs))
        return self.info

    async def _follow(self, stream: EventStream) -> AsyncGenerator[TaskEvent, None]:
        while True:
            try:
                async with self._http.stream("GET", stream.path, **stream.request(self._http.timeout)) as response:
                    if response.status_code != 200:
                        await response.aread()
                        delay = stream.refused(response)
                    else:
                        stream.connected()
                        async for line in response.aiter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
                                if event.terminal:
                                    return
                        delay = stream.dropped(None)
            except httpx.TransportError as e:
                delay = stream.dropped(e)
            await asyncio.sleep(delay)


class AsyncTasks:
    """The task endpoints of one server for asyncio (`AsyncClient(...).tasks`): the methods of `Tasks`, awaited."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def submit(self, kind: TaskKind, input: dict[str, Any], *, model: str | None = None,
                     session_id: str | None = None, idempotency_key: str | None = None,
                     priority: Priority | None = None, metadata: dict[str, str] | None = None,
                     ) -> AsyncTask:  # fmt: skip
        """See `Tasks.submit`."""
        body = submit_body(kind, input, model=model, session_id=session_id, idempotency_key=idempotency_key,
                           priority=priority, metadata=metadata)  # fmt: skip
        return AsyncTask(self._http, TaskInfo.from_json(await acall(self._http, "POST", "/v1/tasks", json=body)))

    async def get(self, task_id: str) -> AsyncTask:
        """See `Tasks.get`."""
        return AsyncTask(self._http, TaskInfo.from_json(await acall(self._http, "GET", task_path(task_id))))

    async def list(self, *, status: str | None = None, kind: str | None = None,
                   limit: int = 20) -> builtins.list[TaskInfo]:  # fmt: skip
        """See `Tasks.list`."""
        found: builtins.list[TaskInfo] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await acall(self._http, "GET", "/v1/tasks", params=list_params(status, kind, limit - len(found),
                                                                                   cursor))  # fmt: skip
            found += [TaskInfo.from_json(item) for item in page["data"]]
            if not (cursor := page.get("next_cursor")) or not page["data"]:
                break
        return found[:limit]
