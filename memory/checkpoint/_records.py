"""How checkpoints, channel values and pending writes are packed into Redis values, and unpacked.

The saver's serializer (`serde.dumps_typed`) turns each value into `(type, bytes)`; a small msgpack envelope
keeps that pair, plus the few plain fields stored beside it, in one Redis value. Every decoding failure —
of the envelope or of the serializer's bytes — becomes a `CorruptCheckpointError` that names what was being
read, instead of a traceback from deep inside msgpack.
"""

from dataclasses import dataclass
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.base import SerializerProtocol

from chimera.memory.checkpoint.base import CorruptCheckpointError

Typed = tuple[str, bytes]
EMPTY: Typed = ("empty", b"")  # a channel named in new_versions but holding no value


@dataclass(frozen=True)
class CheckpointRecord:
    """One stored checkpoint: the checkpoint without its channel values, its metadata, its parent's id."""

    checkpoint: Typed
    metadata: Typed
    parent_id: str | None


@dataclass(frozen=True)
class WriteRecord:
    """One stored pending write of a task."""

    task_id: str
    idx: int
    channel: str
    value: Typed
    task_path: str


def pack_record(record: CheckpointRecord) -> bytes:
    """Envelope a checkpoint record."""
    return ormsgpack.packb([*record.checkpoint, *record.metadata, record.parent_id])


def unpack_record(raw: bytes, where: str) -> CheckpointRecord:
    """Open a checkpoint record stored at `where`."""
    ctype, cdata, mtype, mdata, parent_id = _unpack(raw, 5, where)
    return CheckpointRecord(
        (_str(ctype, where), _bytes(cdata, where)), (_str(mtype, where), _bytes(mdata, where)), parent_id
    )


def pack_blob(value: Typed) -> bytes:
    """Envelope a serialized channel value."""
    return ormsgpack.packb(list(value))


def unpack_blob(raw: bytes, where: str) -> Typed:
    """Open a channel value stored at `where`."""
    type_, data = _unpack(raw, 2, where)
    return _str(type_, where), _bytes(data, where)


def pack_write(write: WriteRecord) -> bytes:
    """Envelope a pending write."""
    return ormsgpack.packb([write.task_id, write.idx, write.channel, *write.value, write.task_path])


def unpack_write(raw: bytes, where: str) -> WriteRecord:
    """Open a pending write stored at `where`."""
    task_id, idx, channel, type_, data, task_path = _unpack(raw, 6, where)
    if not isinstance(idx, int):
        raise CorruptCheckpointError(f"{where}: write index is {type(idx).__name__}, not int")
    typed = (_str(type_, where), _bytes(data, where))
    return WriteRecord(_str(task_id, where), idx, _str(channel, where), typed, _str(task_path, where))


def loads(serde: SerializerProtocol, value: Typed, where: str) -> Any:
    """Deserialize `value` with the saver's serializer, naming `where` if it cannot be read."""
    try:
        return serde.loads_typed(value)
    # The serializer is pluggable (msgpack, JSON, pickle, encrypted…) and each fails with its own exception
    # types; all of them mean the same thing here, and the original stays chained.
    except Exception as e:
        raise CorruptCheckpointError(f"{where}: cannot decode {value[0]!r} value: {e}") from e


def _unpack(raw: bytes, fields: int, where: str) -> list[Any]:
    try:
        value = ormsgpack.unpackb(raw)
    except ormsgpack.MsgpackDecodeError as e:
        raise CorruptCheckpointError(f"{where}: not a checkpoint envelope: {e}") from e
    if not isinstance(value, list) or len(value) != fields:
        raise CorruptCheckpointError(f"{where}: expected an envelope of {fields} fields, got {type(value).__name__}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CorruptCheckpointError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise CorruptCheckpointError(f"{where}: expected bytes, got {type(value).__name__}")
    return value
