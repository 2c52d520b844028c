"""`MemoryModelActor`: the memory model in a Ray actor, serving any session whose state is kept in Redis.

The actor loads the checkpoint once and keeps no session in memory between calls: every call loads the session's
state from Redis, so any replica on any node can continue any session, and a replica that dies loses nothing that
was stored. Ray runs its async methods on one event loop (up to `max_concurrency` at once); the torch work of each
call runs in a thread, so different sessions proceed in parallel while the loop keeps their locks alive.

Importing this module imports no torch (the model loads in `__init__`, inside the actor): the Ray driver that
starts actors needs only the class.
"""

import asyncio
import os
import resource
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import CorruptStateError, MemoryInfo, Recollection, StateMismatchError
from chimera.memory.long_context.state_store import StateStore, StoredState
from chimera.memory.sessions.base import check_session_id
from chimera.models.memory.errors import MemoryModelError

if TYPE_CHECKING:
    from chimera.models.memory.state import MemoryState


class ActorHealth(BaseModel):
    """What a memory actor runs, and the most memory its process has held."""

    model_config = ConfigDict(frozen=True)

    revision: str
    state_bytes: int  # of every session's state: fixed by the model
    chunk_tokens: int
    device: str
    pid: int
    peak_rss_bytes: int


class MemoryModelActor:
    """Read, recall, report and forget sessions' memories with one loaded memory model.

    Args:
        config: the memory section of the configuration; `checkpoint` must be set.
        redis_url: where sessions' states live.
        ttl_s: expire a session's state this long after its last read (None: never).
        lock_ttl_s: expiry of a session's read lock (renewed while the read runs).
        lock_wait_s: how long a read waits for another read of the same session.

    Raises:
        MemoryModelError: no checkpoint configured, or it cannot be loaded.
        UnsupportedModelError: the checkpoint is not a pure Mamba-2.
    """

    def __init__(
        self,
        config: MemoryConfig,
        redis_url: str,
        *,
        ttl_s: int | None = None,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 600.0,
    ) -> None:
        if config.checkpoint is None:
            raise MemoryModelError("no memory checkpoint configured (memory.checkpoint); use extractive memory")
        from chimera.models.memory.mamba import MemoryModel

        device = "cuda" if config.num_gpus > 0 else "cpu"
        self.model: MemoryModel = MemoryModel.load(
            config.checkpoint, chunk_tokens=config.read_chunk_tokens, dtype=config.dtype, device=device
        )
        self.store = StateStore(redis_url, ttl_s=ttl_s, lock_ttl_s=lock_ttl_s, lock_wait_s=lock_wait_s)
        self.recall_max_tokens = config.recall_max_tokens

    async def read(self, session: str, text: str) -> MemoryInfo:
        """Read `text` into the session's state after what it already read (reads of a session are serialized).

        Empty text reads nothing and returns the session's info unchanged.

        Raises:
            StateMismatchError: the stored state belongs to another model revision.
            CorruptStateError: the stored state cannot be decoded (`forget` the session to start over).
            ConcurrentUpdateError: the session was forgotten or rewritten during the read; nothing was stored.
        """
        check_session_id(session)
        if not text:
            return await self.state_info(session)
        async with self.store.locked(session):
            stored = await self.store.load(session)
            state = await asyncio.to_thread(self._read, session, stored, text)
            if state.tokens_read == (stored.tokens_read if stored else 0):
                return self._info(session, state)  # the text had no tokens: nothing to store
            await self.store.save(
                session,
                await asyncio.to_thread(state.to_bytes),
                revision=state.revision,
                tokens_read=state.tokens_read,
                state_bytes=state.nbytes,
                expected_version=stored.version if stored else 0,
            )
        return self._info(session, state)

    async def recall(self, session: str, query: str, max_tokens: int | None = None) -> Recollection:
        """Answer `query` by greedy generation from a copy of the session's state; nothing is written.

        Raises:
            StateMismatchError, CorruptStateError: as `read`.
            EmptyQueryError: `query` has no tokens.
        """
        check_session_id(session)
        stored = await self.store.load(session)
        limit = max_tokens or self.recall_max_tokens
        state, answer = await asyncio.to_thread(self._recall, session, stored, query, limit)
        return Recollection(session=session, mode="mamba", text=answer, tokens_read=state.tokens_read)

    async def state_info(self, session: str) -> MemoryInfo:
        """Tokens read, state bytes and revision of the session's stored state (zeros if it has none)."""
        check_session_id(session)
        stored = await self.store.info(session)
        if stored is None:
            return MemoryInfo(session=session, mode="mamba")
        return MemoryInfo(session=session, mode="mamba", tokens_read=stored.tokens_read,
                          state_bytes=stored.state_bytes, revision=stored.revision)  # fmt: skip

    async def forget(self, session: str) -> None:
        """Drop the session's state, whatever it holds (the way out of a corrupt or other-revision state)."""
        check_session_id(session)
        await self.store.delete(session)

    async def health(self) -> ActorHealth:
        """The model this actor serves and its process's peak memory (Linux reports `ru_maxrss` in KiB)."""
        return ActorHealth(
            revision=self.model.revision,
            state_bytes=self.model.spec.total_bytes,
            chunk_tokens=self.model.chunk_tokens,
            device=str(self.model.device),
            pid=os.getpid(),
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        )

    def _read(self, session: str, stored: StoredState | None, text: str) -> "MemoryState":
        state = self._decode(session, stored)
        self.model.read(state, text)
        return state

    def _recall(self, session: str, stored: StoredState | None, query: str, limit: int) -> "tuple[MemoryState, str]":
        state = self._decode(session, stored)
        return state, self.model.recall(state, query, limit)

    def _decode(self, session: str, stored: StoredState | None) -> "MemoryState":
        from chimera.models.memory.state import MemoryState

        if stored is None:
            return self.model.empty_state()
        if stored.revision != self.model.revision:
            raise StateMismatchError(
                f"session {session!r} was read by memory model revision {stored.revision}, this one is "
                f"{self.model.revision}; states of different models are never mixed: forget the session to start "
                "over with this model, or serve it with the model it was read with"
            )
        try:
            return MemoryState.from_bytes(stored.blob, self.model.spec, self.model.revision, self.model.device)
        except CorruptStateError as e:
            raise CorruptStateError(f"session {session!r}: {e}; forget the session to start over") from e

    def _info(self, session: str, state: "MemoryState") -> MemoryInfo:
        return MemoryInfo(session=session, mode="mamba", tokens_read=state.tokens_read, state_bytes=state.nbytes,
                          revision=state.revision)  # fmt: skip
