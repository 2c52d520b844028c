"""The task queue's guarantees, on a real redis-server: fair claims across tenants, the per-tenant cap, priorities,
leases that lapse and are reclaimed (the old holder fenced off), retries with backoff, the dead letter, and a
Redis restart that loses nothing."""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from chimera.identity.principal import Principal
from chimera.memory.redis_server import EmbeddedRedis
from chimera.tasks.model import TaskRecord
from chimera.tasks.queue import TaskQueue, payload_digest

A, B = Principal("key-a", tenant="tenant-a"), Principal("key-b", tenant="tenant-b")


@pytest.fixture
async def queue(redis_db: str) -> AsyncIterator[TaskQueue]:
    q = TaskQueue(redis_db, lease_s=0.5, max_attempts=2)
    yield q
    await q.close()


async def submit(queue: TaskQueue, owner: Principal, priority: str = "normal") -> str:
    record = TaskRecord(uuid.uuid4().hex, "eval", owner, {"n": 1}, priority=priority,  # type: ignore[arg-type]
                        created_at=time.time())  # fmt: skip
    _, task_id = await queue.submit(record, payload_digest(record.input))
    return task_id


async def test_one_tenants_many_tasks_do_not_starve_anothers_one(redis_db: str) -> None:
    queue = TaskQueue(redis_db, lease_s=30)
    many = [await submit(queue, A) for _ in range(200)]
    single = await submit(queue, B)
    claims = [await queue.claim("w1") for _ in range(3)]
    assert [c.task_id for c in claims if c] == [many[0], single, many[1]]  # round robin, least recently served first
    for _ in range(198):
        assert (claim := await queue.claim("w1")) is not None and claim.tenant == "tenant-a"
    assert await queue.claim("w1") is None
    await queue.close()


async def test_a_tenant_at_its_cap_waits_while_others_run(redis_db: str) -> None:
    queue = TaskQueue(redis_db, lease_s=30, max_running_per_tenant=2)
    first, second, third = [await submit(queue, A) for _ in range(3)]
    other = await submit(queue, B)
    held = [await queue.claim("w") for _ in range(3)]
    assert {c.task_id for c in held if c} == {first, second, other}
    assert await queue.claim("w") is None  # A is at its cap, B has nothing left
    done = next(c for c in held if c and c.task_id == first)
    assert await queue.start(done, {}) is not None
    assert await queue.complete(done, "succeeded", {})
    assert (claim := await queue.claim("w")) is not None and claim.task_id == third
    await queue.close()


async def test_high_priority_goes_first_within_a_tenant(queue: TaskQueue) -> None:
    low, normal, high = await submit(queue, A, "low"), await submit(queue, A), await submit(queue, A, "high")
    order = [(await queue.claim("w")) for _ in range(3)]
    assert [c.task_id for c in order if c] == [high, normal, low]


async def test_a_lapsed_lease_is_reclaimed_and_the_old_holder_can_no_longer_finish(queue: TaskQueue) -> None:
    task_id = await submit(queue, A)
    old = await queue.claim("w-old")
    assert old is not None and old.attempt == 1 and await queue.start(old, {"worker": "w-old"}) is not None
    assert await queue.heartbeat(old) == "held"
    assert await queue.claim("w-new") is None  # held: not reclaimable
    await asyncio.sleep(0.6)  # no heartbeat for longer than the lease
    new = await queue.claim("w-new")
    assert new is not None and (new.task_id, new.attempt) == (task_id, 2)
    assert await queue.heartbeat(old) == "lost"
    assert not await queue.complete(old, "succeeded", {"by": "old"})  # fenced: nothing written
    assert await queue.start(new, {"worker": "w-new"}) is not None
    assert await queue.complete(new, "succeeded", {"by": "new"})
    record = await queue.get(task_id, A)
    assert (record.status, record.attempt, record.result) == ("succeeded", 2, {"by": "new"})
    types = [e.type for e in await queue.events(task_id)]
    assert types == ["queued", "started", "retry", "succeeded"]


async def test_a_failed_attempt_is_retried_after_its_backoff_then_dead_lettered(queue: TaskQueue) -> None:
    task_id = await submit(queue, A)
    first = await queue.claim("w")
    assert first is not None and await queue.start(first, {}) is not None
    assert await queue.retry_later(first, {"code": "attempt_failed", "message": "engine restarting"}, 0.2)
    assert (await queue.get(task_id, A)).status == "queued"
    assert await queue.claim("w") is None  # still backing off
    await asyncio.sleep(0.3)
    second = await queue.claim("w")
    assert second is not None and second.attempt == 2 and await queue.start(second, {}) is not None
    assert await queue.retry_later(second, {"code": "attempt_failed", "message": "again"}, 0.0)
    assert await queue.claim("w") is None  # the third delivery would exceed max_attempts: dead-lettered instead
    record = await queue.get(task_id, A)
    assert record.status == "failed" and record.error and record.error["code"] == "attempts_exhausted"
    dead = await queue.redis.xrange("chimera:tasks:dead")
    assert [fields[b"task"].decode() for _, fields in dead] == [task_id]
    assert [e.type for e in await queue.events(task_id)][-1] == "failed"


async def test_queued_and_running_tasks_survive_a_redis_crash(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", watch_interval_s=0.2)
    url = server.start()
    queue = TaskQueue(url, lease_s=0.5)
    try:
        running, waiting = await submit(queue, A), await submit(queue, A)
        claim = await queue.claim("w")
        assert claim is not None and claim.task_id == running and await queue.start(claim, {}) is not None
        await asyncio.sleep(1.2)  # appendfsync everysec: on disk by now
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while server.pid in (None, pid):
            assert time.monotonic() < deadline, "the embedded redis-server was not restarted"
            await asyncio.sleep(0.1)
        for _ in range(50):  # the restarted server loads its append-only file
            try:
                await queue.redis.ping()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                await asyncio.sleep(0.2)
        assert (await queue.get(running, A)).status == "running"
        assert (await queue.get(waiting, A)).status == "queued"
        await asyncio.sleep(0.6)
        again = await queue.claim("w2")
        queued = await queue.claim("w2")
        assert again is not None and (again.task_id, again.attempt) == (running, 2)
        assert queued is not None and queued.task_id == waiting
    finally:
        await queue.close()
        server.stop()
