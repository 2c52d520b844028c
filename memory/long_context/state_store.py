"""Sessions' memory states in Redis: one hash per session, one lock per session, writes fenced by a version.

`chimera:mamba-state:<session>` is a hash: `state` (the safetensors bytes, which carry their own metadata), and
beside it `revision`, `tokens_read`, `state_bytes` and `version`, so `state_info` reads a few fields, not the blob.

Reads of one session are serialized across every replica by a Redis lock (`chimera:mamba-lock:<session>`, kept
alive while a read runs, expiring if its holder dies). The lock alone cannot rule out a lost update: a holder that
stalls past the lock's expiry could still write over a newer state. So each write is also fenced: it succeeds only
if the session's `version` is still the one its read started from (WATCH/MULTI), and bumps it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import LockError, LockNotOwnedError, RedisError, WatchError

from chimera.memory.long_context.base import CorruptStateError, LongMemoryError

_INFO_FIELDS = ("revision", "tokens_read", "state_bytes", "version")


class SessionBusyError(LongMemoryError):
    """Another read of the session held its lock for longer than we were willing to wait."""


class ConcurrentUpdateError(LongMemoryError):
    """The session's state changed (or was forgotten) while this read ran; its result was not written."""


def state_key(session: str) -> str:
    """The Redis hash holding a session's state (apart from `ExtractiveMemory`'s `chimera:memory:*` keys)."""
    return f"chimera:mamba-state:{session}"


def lock_key(session: str) -> str:
    """The Redis lock serializing a session's reads (its own key, so `forget` never drops a held lock)."""
    return f"chimera:mamba-lock:{session}"


@dataclass(frozen=True)
class StoredState:
    """A session's state as stored: the bytes and the fields beside them."""

    blob: bytes
    revision: str
    tokens_read: int
    state_bytes: int
    version: int


class StateStore:
    """Load, save (fenced), lock and delete sessions' states.

    Args:
        url: redis:// or unix:// URL.
        ttl_s: expire a session's state this long after its last read (None: never).
        lock_ttl_s: a session lock's expiry; its holder renews it every third of that while it reads.
        lock_wait_s: how long a read waits for another read of the same session.
    """

    def __init__(
        self, url: str, *, ttl_s: int | None = None, lock_ttl_s: float = 30.0, lock_wait_s: float = 600.0
    ) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._ttl_s = ttl_s
        self._lock_ttl_s = lock_ttl_s
        self._lock_wait_s = lock_wait_s

    async def load(self, session: str) -> StoredState | None:
        """The session's stored state, or None if it has none.

        Raises:
            CorruptStateError: the hash is missing fields or holds non-numbers where numbers belong.
        """
        return await self._get(session, with_blob=True)

    async def info(self, session: str) -> StoredState | None:
        """Like `load`, without fetching the state's bytes (`blob` is empty)."""
        return await self._get(session, with_blob=False)

    async def _get(self, session: str, *, with_blob: bool) -> StoredState | None:
        fields = ("state", *_INFO_FIELDS) if with_blob else _INFO_FIELDS
        with _redis_errors(f"read the memory of session {session!r}"):
            values = await self._redis.hmget(state_key(session), fields)
        if all(v is None for v in values):
            return None
        try:
            revision, tokens_read, state_bytes, version = (_text(v) for v in values[-4:])
            blob = values[0] if with_blob else b""
            if not isinstance(blob, bytes):
                raise ValueError("no state bytes beside the fields")
            return StoredState(blob, revision, int(tokens_read), int(state_bytes), int(version))
        except ValueError as e:  # UnicodeDecodeError is one too
            raise CorruptStateError(f"session {session!r}: its stored memory is damaged ({e}); forget it") from e

    async def save(
        self, session: str, blob: bytes, *, revision: str, tokens_read: int, state_bytes: int, expected_version: int
    ) -> int:
        """Write the session's state if its version is still `expected_version` (0: no state); return the new one.

        Raises:
            ConcurrentUpdateError: the version moved on (another write, or `forget`) since the read began.
        """
        key = state_key(session)
        with _redis_errors(f"save the memory of session {session!r}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    current = await pipe.hget(key, "version")
                    if int(current or 0) != expected_version:
                        raise ConcurrentUpdateError(
                            f"session {session!r} changed while it was read (version {expected_version} → "
                            f"{int(current or 0)}); the read was not stored"
                        )
                    pipe.multi()
                    pipe.hset(key, mapping={"state": blob, "revision": revision, "tokens_read": tokens_read,
                                            "state_bytes": state_bytes, "version": expected_version + 1})  # fmt: skip
                    if self._ttl_s is not None:
                        pipe.expire(key, self._ttl_s)
                    await pipe.execute()
                except WatchError as e:
                    raise ConcurrentUpdateError(f"session {session!r} changed while its read was stored") from e
        return expected_version + 1

    async def delete(self, session: str) -> None:
        """Drop the session's state (a read in flight then fails its fenced write)."""
        with _redis_errors(f"forget the memory of session {session!r}"):
            await self._redis.delete(state_key(session))

    @contextlib.asynccontextmanager
    async def locked(self, session: str) -> AsyncIterator[None]:
        """Hold the session's lock for the body, renewing it while the body runs.

        Raises:
            SessionBusyError: the lock did not come free within `lock_wait_s`.
        """
        lock = self._redis.lock(
            lock_key(session), timeout=self._lock_ttl_s, blocking_timeout=self._lock_wait_s, thread_local=False
        )
        with _redis_errors(f"lock the memory of session {session!r}"):
            acquired = await lock.acquire()
        if not acquired:
            raise SessionBusyError(f"session {session!r} is being read elsewhere; gave up after {self._lock_wait_s}s")
        keeper = asyncio.create_task(self._keep_alive(lock))
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            # An expired lock is not an error here: the fenced write has already refused any lost update.
            with contextlib.suppress(LockNotOwnedError):
                await lock.release()

    async def _keep_alive(self, lock: aioredis.lock.Lock) -> None:
        try:
            while True:
                await asyncio.sleep(self._lock_ttl_s / 3)
                await lock.reacquire()
        except LockError:
            return  # lost (expired while the loop stalled): the fenced write keeps the state consistent

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


def _text(value: bytes | str | None) -> str:
    if value is None:
        raise ValueError("a field is missing")
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def _redis_errors(what: str) -> Iterator[None]:
    try:
        yield
    except RedisError as e:
        raise LongMemoryError(f"cannot {what}: Redis failed: {e}") from e
