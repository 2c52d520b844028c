"""The durable task queue on Redis: submit, claim with a lease, heartbeat, complete, retry, cancel, resume; and the
reads (a task, a principal's tasks, a task's events).

At-least-once: a claimed task is an entry in its tenant's Redis stream, pending for the claiming worker's consumer
until the worker completes it. A worker that dies stops heartbeating; after `lease_s` the next claim takes the
entry (`XAUTOCLAIM`) with the attempt number one higher, and an agent task continues from its last checkpoint.
A worker whose lease was taken cannot complete the task any more (every transition checks who holds the entry), so
each task ends exactly once, with exactly one terminal event. The transitions are the Lua scripts of `_scripts.py`.
"""

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.identity.principal import Principal
from chimera.tasks import _scripts
from chimera.tasks.model import (
    TERMINAL,
    InvalidCursorError,
    TaskConflictError,
    TaskError,
    TaskEvent,
    TaskExpiredError,
    TaskNotFoundError,
    TaskRecord,
)

_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,32}:")
_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


class QueueUnavailableError(TaskError):
    """Redis did not answer."""


@dataclass(frozen=True)
class Claim:
    """A worker's lease on one task: the queue entry it holds, and which delivery this is."""

    consumer: str  # the worker holding it
    stream: str
    entry: str
    task_id: str
    attempt: int
    tenant: str


def payload_digest(payload: dict[str, Any]) -> str:
    """What makes two submissions the same task (for idempotency keys): the canonical JSON of what was asked."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


class TaskQueue:
    """Tasks in Redis. Every method is one atomic script or a read; any API process or worker may call any."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        max_running_per_tenant: int | None = None,
        result_ttl_s: int = 7 * 24 * 3600,
        prefix: str = "chimera:",
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"key prefix {prefix!r} must be letters, digits, '.', '_' or '-', ending with ':'")
        # Any: redis-py types every reply `bytes | str` whatever the client; this one (no decode_responses) gives bytes
        self.redis: Any = aioredis.Redis.from_url(url)
        self.prefix = prefix  # every key of this queue starts with it: deployments (or tests) sharing a Redis
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_running_per_tenant = max_running_per_tenant
        self.result_ttl_s = result_ttl_s
        self._scripts = {
            name: self.redis.register_script(getattr(_scripts, name).replace("'chimera:", f"'{prefix}"))
            for name in ("SUBMIT", "CLAIM", "HEARTBEAT", "START", "COMPLETE", "RETRY_LATER", "CANCEL", "RESUME")
        }

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as e:
            raise QueueUnavailableError(f"the task queue (Redis) is unavailable: {e}") from e

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _record(self, task_id: str) -> str:
        return self._key(f"task:{task_id}")

    def _events(self, task_id: str) -> str:
        return self._key(f"task-events:{task_id}")

    # --- the API's side -------------------------------------------------------------------------------------------

    async def submit(self, record: TaskRecord, digest: str) -> tuple[Literal["new", "existing"], str]:
        """Store and enqueue `record`; with an idempotency key already used by the same principal, the existing
        task's id instead (same payload digest), or `TaskConflictError` (another payload)."""
        key = record.idempotency_key
        idem = self._key(f"tasks:idem:{record.owner.id}:{key}" if key else "tasks:idem:-")
        fields = [item for pair in record.to_hash().items() for item in pair]
        queued = json.dumps({"kind": record.kind, "priority": record.priority})
        ttl = self.result_ttl_s + 86400 if key else 0  # an idempotency key outlives the task's result by a day
        outcome, task_id = await self._run(
            "SUBMIT",
            [self._record(record.id), idem],
            [record.id, record.owner.tenant, record.priority, f"{record.id} {digest}", ttl, queued, *fields],
        )
        if outcome == b"conflict":
            raise TaskConflictError(
                f"idempotency key {key!r} was used for another payload (task {task_id.decode()})",
                "idempotency_conflict",
            )
        return ("new" if outcome == b"new" else "existing"), task_id.decode()

    async def get(self, task_id: str, principal: Principal) -> TaskRecord:
        """The task, if `principal` owns it (admins read every task).

        Raises:
            TaskNotFoundError: no such task, or another principal's.
            TaskExpiredError: the principal's task finished more than the result TTL ago.
        """
        try:
            raw = await self.redis.hgetall(self._record(task_id))
            gone = None if raw else await self.redis.get(self._key(f"task-gone:{task_id}"))
        except (RedisError, OSError) as e:
            raise QueueUnavailableError(f"the task queue (Redis) is unavailable: {e}") from e
        if not raw:
            if gone is not None and (gone.decode() == principal.id or principal.is_admin):
                raise TaskExpiredError(
                    f"task {task_id} finished more than {self.result_ttl_s} s ago; its result expired"
                )
            raise TaskNotFoundError(f"no task {task_id}")
        record = TaskRecord.from_hash(raw)
        if record.owner.id != principal.id and not principal.is_admin:
            raise TaskNotFoundError(f"no task {task_id}")
        return record

    async def owned(
        self, principal: Principal, *, status: str | None = None, kind: str | None = None, limit: int = 20,
        before: float | None = None,
    ) -> tuple[list[TaskRecord], float | None]:  # fmt: skip
        """The principal's tasks, newest first, created before `before`; and the cursor of the next page."""
        index = self._key(f"tasks:owner:{principal.id}")
        found: list[TaskRecord] = []
        top: float | str = f"({before!r}" if before is not None else "+inf"
        while len(found) < limit:
            page = await self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=100, withscores=True)
            if not page:
                return found, None
            raws = await asyncio.gather(*(self.redis.hgetall(self._record(m.decode())) for m, _ in page))
            for (member, score), raw in zip(page, raws, strict=True):
                if not raw:  # expired: the index forgets it
                    await self.redis.zrem(index, member)
                    continue
                record = TaskRecord.from_hash(raw)
                if (status is None or record.status == status) and (kind is None or record.kind == kind):
                    found.append(record)
                    if len(found) == limit:
                        return found, score
            top = f"({page[-1][1]!r}"
        return found, None

    async def cancel(self, task_id: str, principal: Principal) -> TaskRecord:
        """Cancel the task (idempotent): queued or paused → cancelled now; running → stopped between steps."""
        await self.get(task_id, principal)
        cancelled = json.dumps({"code": "cancelled", "message": f"cancelled by {principal.id}"})
        await self._run("CANCEL", [], [task_id, repr(time.time()), self.result_ttl_s, cancelled])
        return await self.get(task_id, principal)

    async def resume(self, task_id: str, principal: Principal, *, approve: bool) -> TaskRecord:
        """Continue a paused agent task, approving or declining its pending work.

        Raises:
            TaskConflictError: the task is not paused.
        """
        await self.get(task_id, principal)
        status = await self._run("RESUME", [], [task_id, "1" if approve else "0"])
        if status != b"resumed":
            state = status.decode() if status else "gone"
            raise TaskConflictError(
                f"task {task_id} is {state}, not paused: there is nothing to resume", "task_not_paused"
            )
        return await self.get(task_id, principal)

    async def delete(self, task_id: str, principal: Principal) -> None:
        """Forget a finished task: its record and events (its tombstone stays, so it reads as expired)."""
        record = await self.get(task_id, principal)
        if not record.terminal:
            raise TaskConflictError(
                f"task {task_id} is {record.status}; cancel it first, then delete it", "task_not_finished"
            )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._record(task_id), self._events(task_id))
            pipe.zrem(self._key(f"tasks:owner:{record.owner.id}"), task_id)
            await pipe.execute()

    async def events(self, task_id: str, *, after: str | None = None, count: int = 100) -> list[TaskEvent]:
        """The task's events after the cursor `after` (None: from the start), oldest first."""
        start = "-" if after is None else f"({_checked_cursor(after)}"
        rows = await self.redis.xrange(self._events(task_id), start, "+", count=count)
        return [_event(entry, fields) for entry, fields in rows]

    async def follow(
        self, task_id: str, principal: Principal, *, after: str | None = None, idle_timeout_s: float = 15.0
    ) -> AsyncIterator[TaskEvent | None]:
        """Every event after `after`, then new ones as they come, until the terminal event; `None` after each
        `idle_timeout_s` without an event (the SSE route sends a keep-alive comment).

        Raises (before the first event):
            TaskNotFoundError, TaskExpiredError, InvalidCursorError.
        """
        await self.get(task_id, principal)
        cursor = "0-0" if after is None else _checked_cursor(after)
        return self._follow(task_id, cursor, idle_timeout_s)

    async def _follow(self, task_id: str, cursor: str, idle_timeout_s: float) -> AsyncIterator[TaskEvent | None]:
        key = self._events(task_id)
        quiet_since = time.monotonic()
        while True:
            # blocks of at most 4 s: redis-py gives up on a reply after 5 s by default
            rows = await self.redis.xread({key: cursor}, count=100, block=int(min(idle_timeout_s, 4.0) * 1000))
            if not rows:
                status = await self.redis.hget(self._record(task_id), "status")
                if status is None:
                    raise TaskExpiredError(f"task {task_id} expired while it was followed")
                if status.decode() in TERMINAL:  # ended: what came since the read, then the stream is over
                    for entry, fields in (await self.redis.xread({key: cursor}, count=1000) or [(key, [])])[0][1]:
                        yield _event(entry, fields)
                    return
                if time.monotonic() - quiet_since >= idle_timeout_s:
                    quiet_since = time.monotonic()
                    yield None
                continue
            quiet_since = time.monotonic()
            for entry, fields in rows[0][1]:
                event = _event(entry, fields)
                cursor = event.id
                yield event
                if event.terminal:
                    return

    async def stats(self, *, seen_within_s: float = 15.0) -> dict[str, int]:
        """For /healthz: tasks waiting, tasks running, and workers that announced themselves lately."""
        running = sum(int(r) for r in await self.redis.hvals(self._key("tasks:running")))
        alive = len(await self.workers(seen_within_s=seen_within_s))
        return {"waiting": await self.depth(), "running": running, "workers": alive}

    async def workers(self, *, seen_within_s: float = 15.0) -> dict[str, dict[str, Any]]:
        """The workers that announced themselves lately: name → what they said (pid, host, running, seen)."""
        seen = {k.decode(): json.loads(v) for k, v in (await self.redis.hgetall(self._key("tasks:workers"))).items()}
        return {name: info for name, info in seen.items() if time.time() - info["seen"] <= seen_within_s}

    async def announce(self, worker: str, info: dict[str, Any]) -> None:
        """A worker says it is alive (and what it runs); `stats` counts those seen lately."""
        try:
            await self.redis.hset(self._key("tasks:workers"), worker, json.dumps({**info, "seen": time.time()}))
        except (RedisError, OSError) as e:
            raise QueueUnavailableError(f"the task queue (Redis) is unavailable: {e}") from e

    async def depth(self) -> int:
        """Entries waiting for a worker, over every tenant (leased ones not counted)."""
        streams = await self.redis.smembers(self._key("tasks:streams"))
        lengths = await asyncio.gather(*(self.redis.xlen(s) for s in streams))
        running = await self.redis.hvals(self._key("tasks:running"))
        return max(0, sum(lengths) - sum(int(r) for r in running))

    # --- the workers' side ----------------------------------------------------------------------------------------

    async def claim(self, consumer: str) -> Claim | None:
        """The next task for `consumer`: a reclaimed one first, then tenants least recently served."""
        got = await self._run(
            "CLAIM",
            [],
            [
                consumer,
                int(self.lease_s * 1000),
                self.max_running_per_tenant or 0,
                self.max_attempts,
                repr(time.time()),
                self.result_ttl_s,
            ],
        )
        if not got:
            return None
        stream, entry, task_id, deliveries, tenant = got
        return Claim(consumer, stream.decode(), entry.decode(), task_id.decode(), int(deliveries), tenant.decode())

    async def wait_for_work(self, timeout_s: float) -> None:
        """Block until something is enqueued (or `timeout_s`): one token per entry, so one idle worker wakes each."""
        try:
            await self.redis.blpop([self._key("tasks:bell")], timeout=timeout_s)
        except (RedisError, OSError):
            await asyncio.sleep(timeout_s)

    async def start(self, claim: Claim, worker: dict[str, Any]) -> TaskRecord | None:
        """Mark the claimed task running (attempt = delivery count); None when it must not run (cancelled while
        queued, expired, or the lease already lost): its entry is released. `worker` goes into the started event."""
        started = await self._run(
            "START",
            [claim.stream],
            [
                claim.consumer,
                claim.entry,
                claim.task_id,
                claim.attempt,
                repr(time.time()),
                claim.tenant,
                json.dumps(worker),
            ],
        )
        if not isinstance(started, list):  # 0: not runnable, -1: lease lost
            return None
        return TaskRecord.from_hash(dict(zip(started[::2], started[1::2], strict=True)))

    async def heartbeat(self, claim: Claim) -> Literal["held", "cancel", "lost"]:
        """Renew the lease; whether a cancel was asked for, or the lease was lost (the task runs elsewhere now)."""
        state = await self._run("HEARTBEAT", [claim.stream], [claim.consumer, claim.entry, claim.task_id])
        return {0: "held", 1: "cancel"}.get(int(state), "lost")  # type: ignore[return-value]

    async def emit(self, task_id: str, type_: str, data: dict[str, Any], attempt: int) -> str:
        """Append an event to the task's stream; its id is the client's cursor."""
        entry = await self.redis.xadd(
            self._events(task_id), {"type": type_, "attempt": attempt, "data": json.dumps(data)}
        )
        return entry.decode()

    async def complete(
        self, claim: Claim, status: str, payload: dict[str, Any], *, pending: list[dict[str, Any]] | None = None
    ) -> bool:
        """End the claimed task: `succeeded` (payload = result), `failed` or `cancelled` (payload = error), or
        `paused` for approval (payload = the result so far). False when the lease was lost (nothing written)."""
        field = "result" if status in ("succeeded", "paused") else "error"
        done = await self._run(
            "COMPLETE",
            [claim.stream],
            [
                claim.consumer,
                claim.entry,
                claim.tenant,
                claim.task_id,
                status,
                field,
                json.dumps(payload),
                repr(time.time()),
                self.result_ttl_s,
                claim.attempt,
                json.dumps(pending or []),
            ],
        )
        return bool(done)

    async def retry_later(self, claim: Claim, error: dict[str, Any], backoff_s: float) -> bool:
        """Give the task back after a transient failure: it is claimed again after `backoff_s` (as attempt + 1), or
        dead-lettered once `max_attempts` deliveries failed."""
        idle_ms = max(0, int((self.lease_s - backoff_s) * 1000))
        done = await self._run(
            "RETRY_LATER",
            [claim.stream],
            [claim.consumer, claim.entry, idle_ms, claim.task_id, json.dumps(error), claim.attempt],
        )
        return bool(done)


def _checked_cursor(cursor: str) -> str:
    if not _EVENT_ID.fullmatch(cursor):
        raise InvalidCursorError(f"event cursor {cursor!r} is not an event id (like 1733085000000-0)")
    return cursor


def _event(entry: bytes, fields: dict[bytes, bytes]) -> TaskEvent:
    return TaskEvent(entry.decode(), fields[b"type"].decode(), json.loads(fields[b"data"]), int(fields[b"attempt"]))
