"""A task worker: claims tasks from the queue, runs each through the runner of its kind, keeps its lease alive,
stops it when cancelled, and records how it ended. No Ray here: `cluster/task_workers.py` runs one per actor.

One worker runs up to `concurrency` tasks at once (agent tasks mostly wait on engines). While a task runs, a
heartbeat renews its lease every second (or third of `lease_s`, if shorter) and reads the task's cancel flag. A
runner checks `TaskContext.check_cancelled` between steps (the cooperative stop); one that does not stop within
`cancel_grace_s` is cancelled outright. A worker whose lease was taken (it stalled past the lease, and the task was
reclaimed elsewhere) stops the task and writes nothing: the other attempt owns it.
"""

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chimera.errors import ChimeraError
from chimera.tasks.model import TaskCancelledError, TaskRecord, TaskRunError
from chimera.tasks.queue import Claim, TaskQueue

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("chimera.tasks")


@dataclass(frozen=True)
class Progress:
    """An event a runner reports while it works (tool calls, answer text, files ingested)."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """How a run ended: `succeeded` with its result, or `paused` for approval with the work awaiting it."""

    status: str
    result: dict[str, Any]
    pending: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TaskContext:
    """What a runner gets besides the task: its trace parent, a way to report, and the cancel check."""

    task: TaskRecord
    parent: Context | None
    report: Callable[[str, dict[str, Any]], None]  # emit an event from any thread (ingestion runs in one)
    cancelled: asyncio.Event

    def check_cancelled(self) -> None:
        """Raise `TaskCancelledError` if the task was cancelled: runners call it between steps."""
        if self.cancelled.is_set():
            raise TaskCancelledError(f"task {self.task.id} was cancelled")


class TaskRunner(Protocol):
    """Runs the tasks of one kind."""

    def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        """Progress events, then one `Outcome`. Raise `TaskRunError` for a failure a retry would not change,
        `TaskCancelledError` when cancelled; anything else is retried with backoff."""
        ...


class TaskWorker:
    """Claims and runs tasks until stopped.

    Args:
        queue: the queue to claim from.
        runners: builds the runner of each task kind this worker runs, on first use (a worker that only ever
            ingests never loads the chat stack).
        name: the worker's consumer name (unique; a restarted actor keeps its name, so it continues its leases).
        concurrency: tasks run at once.
        retry_backoff_s: the first retry's wait after a transient failure; doubled per attempt.
    """

    def __init__(
        self,
        queue: TaskQueue,
        runners: Mapping[str, Callable[[], Awaitable[TaskRunner]]],
        *,
        name: str,
        concurrency: int = 1,
        cancel_grace_s: float = 10.0,
        retry_backoff_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self._factories = runners
        self._runners: dict[str, TaskRunner] = {}
        self._building = asyncio.Lock()
        self.name = name
        self.concurrency = concurrency
        self.cancel_grace_s = cancel_grace_s
        self.retry_backoff_s = retry_backoff_s
        self.running: dict[str, asyncio.Task[None]] = {}  # task id → its execution
        self._stopping = asyncio.Event()

    @property
    def idle(self) -> bool:
        return not self.running

    async def run(self) -> None:
        """Claim and run tasks until `stop()`; then wait for the running ones to finish."""
        slots = asyncio.Semaphore(self.concurrency)
        announcing = asyncio.create_task(self._announce())
        while not self._stopping.is_set():
            await slots.acquire()
            try:
                claim = await self.queue.claim(self.name)
            except ChimeraError as e:  # Redis away: wait and claim again
                log.warning("worker %s cannot claim: %s", self.name, e)
                claim = None
                await asyncio.sleep(1.0)
            if claim is None:
                slots.release()
                await self._idle_wait(1.0)
                continue
            execution = asyncio.create_task(self._execute(claim))
            self.running[claim.task_id] = execution
            execution.add_done_callback(functools.partial(self._done, claim.task_id, slots))
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        announcing.cancel()

    async def _announce(self, every_s: float = 5.0) -> None:
        """Say every few seconds that this worker is alive (/healthz counts the workers seen lately)."""
        while True:
            try:
                await self.queue.announce(self.name, {"pid": os.getpid(), "host": socket.gethostname(),
                                                      "running": len(self.running)})  # fmt: skip
            except ChimeraError as e:
                log.warning("worker %s cannot announce itself: %s", self.name, e)
            await asyncio.sleep(every_s)

    def _done(self, task_id: str, slots: asyncio.Semaphore, _: "asyncio.Task[None]") -> None:
        self.running.pop(task_id, None)
        slots.release()

    async def _idle_wait(self, timeout_s: float) -> None:
        waiting = asyncio.ensure_future(self.queue.wait_for_work(timeout_s))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for f in (waiting, stopping):
            f.cancel()

    def stop(self) -> None:
        """Claim nothing more; `run` returns when the running tasks have finished."""
        self._stopping.set()

    async def _runner(self, kind: str) -> TaskRunner:
        async with self._building:
            if kind not in self._runners:
                if kind not in self._factories:
                    raise TaskRunError(f"this worker does not run {kind} tasks")
                self._runners[kind] = await self._factories[kind]()
        return self._runners[kind]

    async def _execute(self, claim: Claim) -> None:
        task = await self.queue.start(claim, {"worker": self.name, "pid": os.getpid(), "host": socket.gethostname()})
        if task is None:  # cancelled while queued, expired, or already reclaimed elsewhere
            return
        parent = _parent_of(task)
        with _tracer.start_as_current_span(
            f"task.{task.kind}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "chimera.task.id": task.id,
                "chimera.task.attempt": claim.attempt,
                "chimera.worker": self.name,
                "chimera.tenant": task.owner.tenant,
            },
        ) as span:
            loop = asyncio.get_running_loop()
            cancelled = asyncio.Event()
            if task.cancel_requested:
                cancelled.set()

            reporting: set[asyncio.Future[str]] = set()

            def report(type_: str, data: dict[str, Any]) -> None:
                coro = self.queue.emit(task.id, type_, data, claim.attempt)
                if _in_loop(loop):
                    reporting.add(emitted := asyncio.ensure_future(coro))
                    emitted.add_done_callback(reporting.discard)
                else:
                    asyncio.run_coroutine_threadsafe(coro, loop).result()

            ctx = TaskContext(task, trace.set_span_in_context(span), report, cancelled)
            drive = asyncio.create_task(self._drive(ctx))
            keep = asyncio.create_task(self._keep_lease(claim, drive, cancelled))
            try:
                status, payload, pending = await drive
            except asyncio.CancelledError:
                status, payload, pending = self._after_cancel(claim, keep)
            finally:
                keep.cancel()
            span.set_attribute("chimera.task.status", status)
            if status == "lost":
                log.warning("task %s: lease lost by %s; the attempt that reclaimed it finishes it", task.id, self.name)
                return
            if status == "retry":
                span.set_attribute("chimera.task.retry_in_s", self._backoff(claim.attempt))
                await self.queue.retry_later(claim, payload, self._backoff(claim.attempt))
                return
            await self.queue.complete(claim, status, payload, pending=pending)

    async def _drive(self, ctx: TaskContext) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        """Run the task to its end; the status to record and its payload."""
        task = ctx.task
        try:
            runner = await self._runner(task.kind)
            async for item in runner.run(ctx):
                if isinstance(item, Outcome):
                    return item.status, item.result, item.pending
                await self.queue.emit(task.id, item.type, item.data, task.attempt)
                ctx.check_cancelled()
            raise TaskRunError(f"the {task.kind} runner ended without an outcome")
        except TaskCancelledError:
            return "cancelled", {"code": "cancelled", "message": "cancelled while running"}, []
        except TaskRunError as e:
            return "failed", {"code": "task_failed", "message": str(e)}, []
        except ChimeraError as e:  # typed, but maybe transient (an engine restarting, Redis failing over)
            log.warning("task %s attempt %d failed: %s", task.id, task.attempt, e)
            return "retry", {"code": "attempt_failed", "message": str(e)}, []
        except Exception as e:  # a bug, or a library's transient error: recorded, retried, dead-lettered at last
            log.exception("task %s attempt %d raised", task.id, task.attempt)
            return "retry", {"code": "attempt_failed", "message": f"{type(e).__name__}: {e}"}, []

    def _after_cancel(self, claim: Claim, keep: "asyncio.Task[str]") -> tuple[str, dict[str, Any], list[Any]]:
        """The run was cancelled outright: by the heartbeat after the grace period, or because the lease was lost."""
        if keep.done() and not keep.cancelled() and keep.result() == "lost":
            return "lost", {}, []
        message = f"cancelled; the run did not stop within {self.cancel_grace_s:g} s and was stopped"
        return "cancelled", {"code": "cancelled", "message": message}, []

    async def _keep_lease(self, claim: Claim, drive: "asyncio.Task[Any]", cancelled: asyncio.Event) -> str:
        """Renew the lease until the run ends; flag a requested cancel, hard-stop it after the grace period."""
        every = max(0.05, min(1.0, self.queue.lease_s / 3))  # also how soon a cancel is seen
        cancel_since: float | None = None
        while not drive.done():
            await asyncio.sleep(every)
            try:
                state = await self.queue.heartbeat(claim)
            except ChimeraError as e:  # Redis away: the lease may lapse; the run goes on (at least once)
                log.warning("heartbeat of task %s failed: %s", claim.task_id, e)
                continue
            if state == "lost":
                drive.cancel()
                return "lost"
            if state == "cancel":
                cancelled.set()
                cancel_since = cancel_since or time.monotonic()
                if time.monotonic() - cancel_since > self.cancel_grace_s:
                    drive.cancel()
                    return "cancelled"
        return "done"

    def _backoff(self, attempt: int) -> float:
        return self.retry_backoff_s * 2 ** (attempt - 1)


def _parent_of(task: TaskRecord) -> Context | None:
    """The submitter's span, from the traceparent the task carries."""
    if not task.traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": task.traceparent})


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
