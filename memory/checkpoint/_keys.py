"""Where a thread's checkpoints live in Redis: five keys per thread, their members joined by NUL.

Keeping a whole thread under a fixed set of keys makes `delete_thread` one DEL, `copy_thread` a copy of five
keys, and a TTL a matter of five EXPIREs, however long the thread. The thread id sits in a hash tag
(`{...}`), so the keys of one thread land in one slot and a MULTI over them stays valid on a cluster.

Members of the two sorted sets all have score 0: Redis orders them by their bytes, and because the namespace
comes first and checkpoint ids (uuid6) sort by time, ZRANGEBYLEX over `ns NUL` walks one namespace's
checkpoints (or one checkpoint's writes) in order.
"""

from dataclasses import dataclass

SEP = b"\x00"
_TOP = b"\xff"  # above every byte of a checkpoint id, task id or index
_SUFFIXES = ("checkpoints", "order", "blobs", "writes", "write_order")


@dataclass(frozen=True)
class ThreadKeys:
    """The Redis keys of one thread.

    Attributes:
        checkpoints: HASH `ns NUL checkpoint_id` → packed checkpoint record (checkpoint, metadata, parent id).
        order: ZSET of the same members, score 0: the lexicographic index of the thread's checkpoints.
        blobs: HASH `ns NUL channel NUL version` → packed channel value.
        writes: HASH `ns NUL checkpoint_id NUL task_id NUL idx` → packed pending write.
        write_order: ZSET of the `writes` fields, score 0: finds one checkpoint's writes by range.
    """

    checkpoints: str
    order: str
    blobs: str
    writes: str
    write_order: str

    @classmethod
    def of(cls, prefix: str, thread_id: str) -> "ThreadKeys":
        """The keys of `thread_id` under `prefix`."""
        base = thread_base(prefix, thread_id)
        return cls(*(f"{base}:{suffix}" for suffix in _SUFFIXES))

    def all(self) -> tuple[str, ...]:
        """Every key of the thread, for DEL and EXPIRE."""
        return (self.checkpoints, self.order, self.blobs, self.writes, self.write_order)


def thread_base(prefix: str, thread_id: str) -> str:
    """`prefix:{thread_id}`: the common start of a thread's keys."""
    return f"{prefix}:{{{thread_id}}}"


def order_key_pattern(prefix: str) -> str:
    """A SCAN pattern matching the `order` key of every thread under `prefix`."""
    escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)
    return f"{escaped}:{{*}}:order"


def thread_id_of_order_key(prefix: str, key: str) -> str:
    """The thread id inside an `order` key found by SCAN (prefix and suffix have fixed lengths)."""
    return key[len(prefix) + 2 : -len("}:order")]


def checkpoint_member(checkpoint_ns: str, checkpoint_id: str) -> bytes:
    """The field/member naming one checkpoint of a thread."""
    return checkpoint_ns.encode() + SEP + checkpoint_id.encode()


def split_checkpoint_member(member: bytes) -> tuple[str, str]:
    """`(checkpoint_ns, checkpoint_id)` of a checkpoint member."""
    ns, _, checkpoint_id = member.rpartition(SEP)
    return ns.decode(), checkpoint_id.decode()


def blob_field(checkpoint_ns: str, channel: str, version: str | int | float) -> bytes:
    """The field holding one version of one channel's value."""
    return SEP.join((checkpoint_ns.encode(), channel.encode(), str(version).encode()))


def write_field(checkpoint_ns: str, checkpoint_id: str, task_id: str, idx: int) -> bytes:
    """The field holding one pending write: unique per (checkpoint, task, index)."""
    return SEP.join((checkpoint_ns.encode(), checkpoint_id.encode(), task_id.encode(), str(idx).encode()))


def namespace_range(checkpoint_ns: str, before_id: str | None = None) -> tuple[bytes, bytes]:
    """`(max, min)` for ZREVRANGEBYLEX over a namespace's checkpoints, newest first, optionally below `before_id`."""
    start = checkpoint_ns.encode() + SEP
    upper = b"(" + start + before_id.encode() if before_id is not None else b"[" + start + _TOP
    return upper, b"[" + start


def writes_range(checkpoint_ns: str, checkpoint_id: str) -> tuple[bytes, bytes]:
    """`(min, max)` for ZRANGEBYLEX over the write fields of one checkpoint."""
    start = checkpoint_member(checkpoint_ns, checkpoint_id) + SEP
    return b"[" + start, b"[" + start + _TOP
