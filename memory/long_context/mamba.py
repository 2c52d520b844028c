"""`MambaMemory`: long-context memory from a Mamba-2 memory model running in Ray actors, states kept in Redis.

Each session's memory is the model's fixed-size recurrent state after reading everything the session was given,
stored in Redis (`state_store.py`) and served by `MemoryModelActor` replicas (`actor.py`). Any replica can serve any
session; the client sends a session to one replica by a hash of its id, so a session's reads usually queue in one
place, and the Redis lock serializes them when they do not (two clients, a replica restart).

Errors raised inside an actor reach the caller as themselves (`StateMismatchError`, `CorruptStateError`, …), not
wrapped in Ray's exception types. Importing this module imports neither Ray nor torch.
"""

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from chimera.config import MemoryConfig
from chimera.errors import ChimeraError
from chimera.memory.long_context.base import LongMemory, LongMemoryError, MemoryInfo, Recollection
from chimera.memory.sessions.base import check_session_id
from chimera.models.memory.errors import MemoryModelError
from chimera.models.memory.families import check_checkpoint

if TYPE_CHECKING:
    from chimera.memory.long_context.actor import ActorHealth

T = TypeVar("T")


class MambaMemory(LongMemory):
    """`LongMemory` over memory-model actors.

    Args:
        replicas: handles of running `MemoryModelActor`s (Ray actors) sharing one Redis. `start` creates them.
        owned: kill the actors on `close` (True when `start` created them).
    """

    mode = "mamba"

    def __init__(self, replicas: Sequence[Any], *, owned: bool = False) -> None:
        if not replicas:
            raise ValueError("MambaMemory needs at least one memory actor")
        self._replicas = list(replicas)
        self._owned = owned

    @classmethod
    def start(
        cls,
        config: MemoryConfig,
        redis_url: str,
        *,
        replicas: int | None = None,
        ttl_s: int | None = None,
        max_concurrency: int = 8,
    ) -> "MambaMemory":
        """Start `replicas` memory actors on the running Ray cluster, each loading `config.checkpoint` once.

        Args:
            config: the memory section; its checkpoint must be a pure Mamba-2 folder.
            redis_url: the Redis every replica keeps sessions' states in.
            replicas: how many actors (None: `config.replicas`); each reserves `config.num_cpus` / `config.num_gpus`.
            ttl_s: expire a session's state this long after its last read (None: never).
            max_concurrency: calls one actor runs at once (different sessions in parallel).

        Raises:
            MemoryModelError: no checkpoint configured, or its folder has no readable config.
            UnsupportedModelError: the checkpoint is not a pure Mamba-2 (refused here, before any actor starts).
        """
        import ray

        from chimera.memory.long_context.actor import MemoryModelActor

        if config.checkpoint is None:
            raise MemoryModelError("no memory checkpoint configured (memory.checkpoint); use extractive memory")
        check_checkpoint(config.checkpoint)
        actor = ray.remote(MemoryModelActor).options(
            num_cpus=config.num_cpus, num_gpus=config.num_gpus, max_concurrency=max_concurrency
        )
        count = config.replicas if replicas is None else replicas
        return cls([actor.remote(config, redis_url, ttl_s=ttl_s) for _ in range(count)], owned=True)

    async def read(self, session: str, text: str) -> MemoryInfo:
        return await self._call(session, lambda actor: actor.read.remote(session, text))

    async def recall(self, session: str, query: str, max_tokens: int | None = None) -> Recollection:
        return await self._call(session, lambda actor: actor.recall.remote(session, query, max_tokens))

    async def state_info(self, session: str) -> MemoryInfo:
        return await self._call(session, lambda actor: actor.state_info.remote(session))

    async def forget(self, session: str) -> None:
        await self._call(session, lambda actor: actor.forget.remote(session))

    async def health(self) -> "list[ActorHealth]":
        """Each replica's model revision, state size and peak memory; raises if a replica is down."""
        return [await self._await(actor.health.remote()) for actor in self._replicas]

    async def close(self) -> None:
        """Stop the actors if `start` created them."""
        if self._owned:
            import ray

            for actor in self._replicas:
                ray.kill(actor)
            self._owned = False

    def replica_of(self, session: str) -> int:
        """The replica a session's calls go to (stable across processes and runs)."""
        digest = hashlib.blake2b(session.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % len(self._replicas)

    async def _call(self, session: str, call: Callable[[Any], Awaitable[T]]) -> T:
        check_session_id(session)
        return await self._await(call(self._replicas[self.replica_of(session)]))

    @staticmethod
    async def _await(ref: Awaitable[T]) -> T:
        """Await an actor call, turning Ray's wrappers back into our errors."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return await ref
        except RayTaskError as e:
            if isinstance(e.cause, ChimeraError):
                raise e.cause from e
            raise LongMemoryError(f"the memory actor failed: {e}") from e
        except RayActorError as e:
            raise MemoryModelError(f"the memory actor is not running (it failed to start or died): {e}") from e
