"""LangGraph checkpoints on plain Redis (>= 6.2, no modules): hashes and sorted sets only.

`RedisCheckpointSaver` is async-first: every operation is written once, over `redis.asyncio`; the sync methods
LangGraph calls from `graph.invoke` run those coroutines on the saver's background loop. The keys of a thread
are laid out in `_keys.py`. Each `put` / `put_writes` is one MULTI/EXEC, so a process killed mid-run leaves
either the whole checkpoint (or batch of writes) or none of it, and the next run resumes from the last one.
"""

import asyncio
import random
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, cast

import redis.asyncio as aioredis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from chimera.memory.checkpoint._background_loop import BackgroundLoop
from chimera.memory.checkpoint._keys import (
    ThreadKeys,
    blob_field,
    checkpoint_member,
    namespace_range,
    order_key_pattern,
    split_checkpoint_member,
    thread_id_of_order_key,
    write_field,
)
from chimera.memory.checkpoint._read import Row, checkpoint_pages, read_row, read_tuples
from chimera.memory.checkpoint._records import (
    EMPTY,
    CheckpointRecord,
    WriteRecord,
    pack_blob,
    pack_record,
    pack_write,
)
from chimera.memory.checkpoint.base import TTL_KEY, CheckpointError


class RedisCheckpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on a plain Redis server; the thread id is the Chimera session id.

    Args:
        url: Redis URL (`redis://host:port/db` or `unix:///path/redis.sock`).
        key_prefix: Start of every key this saver writes; savers with different prefixes never meet.
        ttl_s: If set, a thread's keys expire this many seconds after its last write (every `put` and
            `put_writes` renews the whole thread, so no checkpoint outlives the values it references). A run
            may set its own in its config (`session_config(session, ttl_s=...)`).
        serde: Serializer for checkpoints, channel values and writes; LangGraph's default if `None`.

    A client is opened per event loop (redis.asyncio connections belong to the loop that opened them): one
    for each loop the async methods are awaited on, one for the background loop behind the sync methods.
    Close yours with `aclose()` before closing its loop; `close()` closes the background one.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "chimera:checkpoint",
        ttl_s: int | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if ttl_s is not None and ttl_s <= 0:
            raise CheckpointError(f"ttl_s must be positive, got {ttl_s}")
        self.key_prefix = key_prefix
        self.ttl_s = ttl_s
        self._url = url
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._clients_lock = threading.Lock()
        self._sync = BackgroundLoop(name=f"checkpoint-saver:{key_prefix}")

    # --- async: the implementation -------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by `config` (its `checkpoint_id`, else the namespace's latest), or `None`.

        Raises:
            CorruptCheckpointError: A stored value cannot be decoded.
            CheckpointError: Redis failed.
        """
        thread_id, ns = _thread_and_ns(config)
        keys, r = self._keys(thread_id), self._redis()
        with _store_errors(f"read a checkpoint of thread {thread_id!r}"):
            checkpoint_id = get_checkpoint_id(config)
            if checkpoint_id is None:
                upper, lower = namespace_range(ns)
                latest = cast(list[bytes], await r.zrevrangebylex(keys.order, upper, lower, start=0, num=1))
                if not latest:
                    return None
                checkpoint_id = split_checkpoint_member(latest[0])[1]
            raw = cast(bytes | None, await r.hget(keys.checkpoints, checkpoint_member(ns, checkpoint_id)))
            if raw is None:
                return None
            (found,) = await read_tuples(r, self.serde, keys, [read_row(self.serde, thread_id, ns, checkpoint_id, raw)])
        return found

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[CheckpointTuple, None]:
        """Checkpoints newest first: of `config`'s thread (all threads if `None`) and namespace (all if unset).

        Args:
            config: Thread, and optionally `checkpoint_ns` / `checkpoint_id`, to list.
            filter: Metadata items every listed checkpoint must have (compared with `==`).
            before: Only checkpoints older than this config's `checkpoint_id`.
            limit: At most this many checkpoints.
        """
        if limit is not None and limit <= 0:
            return
        remaining = limit
        ns = config["configurable"].get("checkpoint_ns") if config else None
        only_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        r = self._redis()
        with _store_errors("list checkpoints"):
            thread_ids = [config["configurable"]["thread_id"]] if config else await self._thread_ids(r)
            for thread_id in thread_ids:
                keys = self._keys(thread_id)
                async for page in checkpoint_pages(r, keys, ns, only_id, before_id):
                    rows: list[Row] = []
                    raws = cast(list[bytes | None], await r.hmget(keys.checkpoints, page))
                    for member, raw in zip(page, raws, strict=True):
                        if raw is None:  # expired or deleted since the index was read
                            continue
                        row_ns, row_id = split_checkpoint_member(member)
                        row = read_row(self.serde, thread_id, row_ns, row_id, raw)
                        if filter and any(row.metadata.get(k) != v for k, v in filter.items()):
                            continue
                        rows.append(row)
                        if remaining is not None and len(rows) == remaining:
                            break
                    for found in await read_tuples(r, self.serde, keys, rows):
                        yield found
                    if remaining is not None:
                        remaining -= len(rows)
                        if remaining == 0:
                            return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed in it, atomically; return its config."""
        thread_id, ns = _thread_and_ns(config)
        keys, r = self._keys(thread_id), self._redis()
        values = checkpoint["channel_values"]
        without_values = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        blobs = {
            blob_field(ns, channel, version): pack_blob(
                self.serde.dumps_typed(values[channel]) if channel in values else EMPTY
            )
            for channel, version in new_versions.items()
        }
        record = CheckpointRecord(
            checkpoint=self.serde.dumps_typed(without_values),
            metadata=self.serde.dumps_typed(get_serializable_checkpoint_metadata(config, metadata)),
            parent_id=get_checkpoint_id(config),
        )
        member = checkpoint_member(ns, checkpoint["id"])
        with _store_errors(f"write checkpoint {checkpoint['id']!r} of thread {thread_id!r}"):
            async with r.pipeline(transaction=True) as pipe:
                if blobs:
                    pipe.hset(keys.blobs, mapping=blobs)
                pipe.hset(keys.checkpoints, member, pack_record(record))
                pipe.zadd(keys.order, {member: 0})
                self._renew(pipe, keys, config)
                await pipe.execute()
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Store a task's writes against a checkpoint, atomically.

        A regular write already stored for (task, index) is kept (a retried task does not duplicate it);
        the special channels (error, interrupt, …) have fixed negative indexes and are replaced.
        """
        if not writes:
            return
        thread_id, ns = _thread_and_ns(config)
        checkpoint_id = config["configurable"]["checkpoint_id"]
        keys, r = self._keys(thread_id), self._redis()
        packed: list[tuple[bytes, bytes, bool]] = []
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            payload = pack_write(WriteRecord(task_id, idx, channel, self.serde.dumps_typed(value), task_path))
            packed.append((write_field(ns, checkpoint_id, task_id, idx), payload, channel in WRITES_IDX_MAP))
        with _store_errors(f"write pending writes of thread {thread_id!r}"):
            async with r.pipeline(transaction=True) as pipe:
                for field, payload, replace in packed:
                    if replace:
                        pipe.hset(keys.writes, field, payload)
                    else:
                        pipe.hsetnx(keys.writes, field, payload)
                pipe.zadd(keys.write_order, dict.fromkeys((field for field, _, _ in packed), 0))
                self._renew(pipe, keys, config)
                await pipe.execute()

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, channel value and write of the thread, in all namespaces."""
        with _store_errors(f"delete thread {thread_id!r}"):
            await self._redis().delete(*self._keys(thread_id).all())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history (every namespace, checkpoint, value and write) into another thread.

        The source is read in one MULTI, so the copy is a consistent snapshot; entries the target already has
        under the same checkpoint ids are overwritten.
        """
        source, target, r = self._keys(source_thread_id), self._keys(target_thread_id), self._redis()
        with _store_errors(f"copy thread {source_thread_id!r} to {target_thread_id!r}"):
            async with r.pipeline(transaction=True) as pipe:
                pipe.hgetall(source.checkpoints)
                pipe.zrange(source.order, 0, -1)
                pipe.hgetall(source.blobs)
                pipe.hgetall(source.writes)
                pipe.zrange(source.write_order, 0, -1)
                checkpoints, order, blobs, writes, write_order = await pipe.execute()
            if not checkpoints:
                return
            async with r.pipeline(transaction=True) as pipe:
                for key, mapping in ((target.checkpoints, checkpoints), (target.blobs, blobs), (target.writes, writes)):
                    if mapping:
                        pipe.hset(key, mapping=mapping)
                for key, members in ((target.order, order), (target.write_order, write_order)):
                    if members:
                        pipe.zadd(key, dict.fromkeys(members, 0))
                self._renew(pipe, target)
                await pipe.execute()

    async def aclose(self) -> None:
        """Close the Redis client of the running event loop."""
        with self._clients_lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> "RedisCheckpointSaver":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- helpers ---------------------------------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version: a zero-padded counter, so versions sort as strings, plus a random tiebreak."""
        number = int(str(current).split(".")[0]) if current is not None else 0
        return f"{number + 1:032}.{random.random():016}"

    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            for closed in [other for other in self._clients if other.is_closed()]:
                del self._clients[closed]  # its loop is gone, and with it any way to close its connections
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = aioredis.Redis.from_url(self._url)
        return client

    def _keys(self, thread_id: str) -> ThreadKeys:
        return ThreadKeys.of(self.key_prefix, thread_id)

    def _renew(self, pipe: Pipeline, keys: ThreadKeys, config: RunnableConfig | None = None) -> None:
        """Queue the EXPIREs that keep a thread's keys alive `ttl_s` past this write (all of them, together); a
        run config may set its own expiry (`session_config(..., ttl_s=...)`)."""
        ttl_s = (config or {}).get("configurable", {}).get(TTL_KEY) or self.ttl_s
        if ttl_s is not None:
            for key in keys.all():
                pipe.expire(key, ttl_s)

    async def _thread_ids(self, r: aioredis.Redis) -> list[str]:
        found = {
            thread_id_of_order_key(self.key_prefix, key.decode())
            async for key in r.scan_iter(match=order_key_pattern(self.key_prefix), count=500)
        }
        return sorted(found)

    # --- sync: thin wrappers over the async methods ----------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Sync `aget_tuple`."""
        return self._sync.run(self.aget_tuple(config))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Sync `aput`."""
        return self._sync.run(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Sync `aput_writes`."""
        self._sync.run(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Sync `adelete_thread`."""
        self._sync.run(self.adelete_thread(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Sync `acopy_thread`."""
        self._sync.run(self.acopy_thread(source_thread_id, target_thread_id))

    def close(self) -> None:
        """Close the background loop's client and stop the loop (async clients close with `aclose`)."""
        if self._sync.started:
            self._sync.run(self.aclose())
            self._sync.stop()

    def __enter__(self) -> "RedisCheckpointSaver":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Sync `alist` (defined last: inside the class body, `list` names this method)."""
        return self._sync.iterate(self.alist(config, filter=filter, before=before, limit=limit))


def _thread_and_ns(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return configurable["thread_id"], configurable.get("checkpoint_ns", "")


@contextmanager
def _store_errors(action: str) -> Iterator[None]:
    """Turn a Redis failure into a `CheckpointError` saying what was being done."""
    try:
        yield
    except RedisError as e:
        raise CheckpointError(f"cannot {action}: {e}") from e
