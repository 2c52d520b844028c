"""The read side of the saver: pick checkpoint members from the index, and turn records into tuples.

Everything that decodes what Redis holds goes through `_records`, so a corrupt value surfaces as a
`CorruptCheckpointError` naming the thread, namespace and checkpoint it belongs to.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, CheckpointTuple, PendingWrite, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from chimera.memory.checkpoint._keys import (
    ThreadKeys,
    blob_field,
    checkpoint_member,
    namespace_range,
    split_checkpoint_member,
    writes_range,
)
from chimera.memory.checkpoint._records import EMPTY, CheckpointRecord, loads, unpack_blob, unpack_record, unpack_write

PAGE = 64  # checkpoints fetched per round trip when listing


@dataclass(frozen=True)
class Row:
    """A checkpoint record read from Redis, its metadata already decoded (`list` filters on it)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    record: CheckpointRecord
    metadata: CheckpointMetadata

    @property
    def where(self) -> str:
        """The checkpoint's name in error messages."""
        return describe(self.thread_id, self.checkpoint_ns, self.checkpoint_id)


def describe(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
    """How errors name a checkpoint."""
    return f"thread {thread_id!r} ns {checkpoint_ns!r} checkpoint {checkpoint_id!r}"


def read_row(serde: SerializerProtocol, thread_id: str, checkpoint_ns: str, checkpoint_id: str, raw: bytes) -> Row:
    """Open a stored checkpoint record and decode its metadata."""
    where = describe(thread_id, checkpoint_ns, checkpoint_id)
    record = unpack_record(raw, where)
    metadata = loads(serde, record.metadata, f"{where} metadata")
    return Row(thread_id, checkpoint_ns, checkpoint_id, record, metadata)


def run_config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config naming one checkpoint."""
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


async def read_tuples(
    r: aioredis.Redis, serde: SerializerProtocol, keys: ThreadKeys, rows: Sequence[Row]
) -> list[CheckpointTuple]:
    """Complete rows into tuples: two round trips for the whole batch (write index + values, then writes)."""
    if not rows:
        return []
    checkpoints: list[Checkpoint] = [loads(serde, row.record.checkpoint, row.where) for row in rows]
    blob_fields = [
        [blob_field(row.checkpoint_ns, ch, v) for ch, v in cp["channel_versions"].items()]
        for row, cp in zip(rows, checkpoints, strict=True)
    ]
    async with r.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.zrangebylex(keys.write_order, *writes_range(row.checkpoint_ns, row.checkpoint_id))
        for fields in blob_fields:
            if fields:
                pipe.hmget(keys.blobs, fields)
        replies = iter(await pipe.execute())
    write_fields = [next(replies) for _ in rows]
    blob_values = [next(replies) if fields else [] for fields in blob_fields]
    flat_fields = [field for fields in write_fields for field in fields]
    flat_writes = iter(cast(list[bytes | None], await r.hmget(keys.writes, flat_fields)) if flat_fields else [])
    write_values = [[next(flat_writes) for _ in fields] for fields in write_fields]

    tuples = []
    for row, cp, raw_blobs, raw_writes in zip(rows, checkpoints, blob_values, write_values, strict=True):
        channels = list(cp["channel_versions"])
        tuples.append(
            CheckpointTuple(
                config=run_config(row.thread_id, row.checkpoint_ns, row.checkpoint_id),
                checkpoint={**cp, "channel_values": _values(serde, row, channels, raw_blobs)},
                metadata=row.metadata,
                parent_config=run_config(row.thread_id, row.checkpoint_ns, row.record.parent_id)
                if row.record.parent_id
                else None,
                pending_writes=_pending_writes(serde, row, raw_writes),
            )
        )
    return tuples


def _values(
    serde: SerializerProtocol, row: Row, channels: Sequence[str], raw_blobs: Sequence[bytes | None]
) -> dict[str, Any]:
    values = {}
    for channel, raw in zip(channels, raw_blobs, strict=True):
        if raw is None:
            continue
        where = f"{row.where} channel {channel!r}"
        typed = unpack_blob(raw, where)
        if typed[0] != EMPTY[0]:
            values[channel] = loads(serde, typed, where)
    return values


def _pending_writes(serde: SerializerProtocol, row: Row, raw_writes: Sequence[bytes | None]) -> list[PendingWrite]:
    where = f"{row.where} pending write"
    writes = [unpack_write(raw, where) for raw in raw_writes if raw is not None]
    writes.sort(key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))
    return [(w.task_id, w.channel, loads(serde, w.value, f"{where} {w.channel!r}")) for w in writes]


async def checkpoint_pages(
    r: aioredis.Redis, keys: ThreadKeys, ns: str | None, only_id: str | None, before_id: str | None
) -> AsyncIterator[list[bytes]]:
    """The thread's checkpoint members to consider, newest first, in pages of at most `PAGE`."""
    if ns is not None and only_id is None:
        upper, lower = namespace_range(ns, before_id)
        while True:  # one namespace: the index is already in order, page through it by lex range
            page = cast(list[bytes], await r.zrevrangebylex(keys.order, upper, lower, start=0, num=PAGE))
            if page:
                yield page
            if len(page) < PAGE:
                return
            upper = b"(" + page[-1]
    if ns is not None and only_id is not None:
        members = [checkpoint_member(ns, only_id)]
    else:
        members = cast(list[bytes], await r.zrange(keys.order, 0, -1))
    ids = {m: split_checkpoint_member(m)[1] for m in members}
    picked = [
        m for m in members if (only_id is None or ids[m] == only_id) and (before_id is None or ids[m] < before_id)
    ]
    picked.sort(key=ids.__getitem__, reverse=True)  # all namespaces: newest first across them
    for start in range(0, len(picked), PAGE):
        yield picked[start : start + PAGE]
