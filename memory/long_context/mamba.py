"""`MambaMemory`: long-context memory from a Mamba-2 memory model running in Ray actors, states kept in Redis.

Each session's memory is the model's fixed-size recurrent state after reading everything the session was given,
stored in Redis (`state_store.py`) and served by `MemoryModelActor` replicas (`actor.py`). Any replica can serve any
session; the client sends a session to one replica by a hash of its id, so a session's reads usually queue in one
place, and the Redis lock serializes them when they do not (two clients, a replica restart).

Errors raised inside an actor reach the caller as themselves (`StateMismatchError`, `CorruptStateError`, …), not
wrapped in Ray's exception types. Importing this module imports neither Ray nor torch; Ray is reached only
through `chimera.cluster.actors`.
"""

import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import LongMemory, LongMemoryError, MemoryInfo, Recollection
from chimera.memory.sessions.base import check_session_id
from chimera.models.memory.errors import MemoryModelError
from chimera.models.memory.families import check_checkpoint

if TYPE_CHECKING:
    from chimera.memory.long_context.actor import ActorHealth

T = TypeVar("T")
RESTART_WAIT_S = 60.0  # how long idempotent calls wait for a dead memory actor to be restarted (model load)


class MambaMemory(LongMemory):
    """`LongMemory` over memory-model actors.

    Args:
        replicas: handles of running `MemoryModelActor`s (Ray actors) sharing one Redis. `start` creates them
            through `cluster.actors` (named `chimera-memory-<i>`, restarted by Ray when they die).
        owned: stop the actors on `close` (True when `start` created them).
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
        name: str = "chimera-memory",
    ) -> "MambaMemory":
        """Start `replicas` memory actors on the running Ray cluster, each loading `config.checkpoint` once.

        Args:
            config: the memory section; its checkpoint must be a pure Mamba-2 folder.
            redis_url: the Redis every replica keeps sessions' states in.
            replicas: how many actors (None: `config.replicas`); each reserves `config.num_cpus` / `config.num_gpus`.
            ttl_s: expire a session's state this long after its last read (None: never).
            max_concurrency: calls one actor runs at once (different sessions in parallel).
            name: the actors are `<name>-<i>`; a process that finds them running (another API replica, the
                `chimera memory` CLI beside a server) uses them and leaves them running on `close`.

        Raises:
            MemoryModelError: no checkpoint configured, or its folder has no readable config.
            UnsupportedModelError: the checkpoint is not a pure Mamba-2 (refused here, before any actor starts).
        """
        from chimera.cluster.actors import ActorSpec, start_actor
        from chimera.memory.long_context.actor import MemoryModelActor

        if config.checkpoint is None:
            raise MemoryModelError("no memory checkpoint configured (memory.checkpoint); use extractive memory")
        check_checkpoint(config.checkpoint)
        count = config.replicas if replicas is None else replicas
        started = [
            start_actor(
                MemoryModelActor,
                ActorSpec(
                    name=f"{name}-{i}",
                    num_cpus=config.num_cpus,
                    num_gpus=config.num_gpus,
                    resources=config.resources,
                    max_concurrency=max_concurrency,
                ),
                config,
                redis_url,
                ttl_s=ttl_s,
            )
            for i in range(count)
        ]
        return cls([handle for handle, _ in started], owned=any(created for _, created in started))

    async def read(self, session: str, text: str) -> MemoryInfo:
        # at most once: a read made again after its actor died might have been applied already
        return await self._call(session, lambda actor: actor.read.remote(session, text), idempotent=False)

    async def recall(self, session: str, query: str, max_tokens: int | None = None) -> Recollection:
        return await self._call(session, lambda actor: actor.recall.remote(session, query, max_tokens))

    async def state_info(self, session: str) -> MemoryInfo:
        return await self._call(session, lambda actor: actor.state_info.remote(session))

    async def forget(self, session: str) -> None:
        await self._call(session, lambda actor: actor.forget.remote(session))

    async def health(self) -> "list[ActorHealth]":
        """Each replica's model revision, state size and peak memory; raises if a replica is down."""
        return [await self._await(functools.partial(_health, actor), idempotent=True) for actor in self._replicas]

    async def close(self) -> None:
        """Stop the actors if `start` created them (a process that found them running leaves them)."""
        if self._owned:
            from chimera.cluster.actors import stop_actor

            for actor in self._replicas:
                stop_actor(actor)
            self._owned = False

    def replica_of(self, session: str) -> int:
        """The replica a session's calls go to (stable across processes and runs)."""
        digest = hashlib.blake2b(session.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % len(self._replicas)

    async def _call(self, session: str, call: Callable[[Any], Awaitable[T]], *, idempotent: bool = True) -> T:
        check_session_id(session)
        actor = self._replicas[self.replica_of(session)]
        return await self._await(lambda: call(actor), idempotent=idempotent)

    @staticmethod
    async def _await(call: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """Make an actor call; idempotent ones are made again while a dead actor restarts. The actor's typed
        errors arrive as themselves, Ray's as memory errors."""
        from chimera.cluster.actors import ActorError, ActorUnavailableError, call_actor

        try:
            return await call_actor(call, retry_for_s=RESTART_WAIT_S if idempotent else 0.0)
        except ActorUnavailableError as e:
            raise MemoryModelError(str(e)) from e
        except ActorError as e:
            raise LongMemoryError(f"the memory actor failed: {e}") from e


def _health(actor: Any) -> Awaitable["ActorHealth"]:
    return actor.health.remote()
