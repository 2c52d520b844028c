"""The one place Chimera creates Ray actors, calls them, and stops them.

Every long-lived actor (memory model replicas today; task workers next) is named, placed by the resources its
config asks for, and restarted by Ray when its process dies (`max_restarts`). Its state lives in Redis, so a
restarted actor, or another replica, carries on. Calls come back as Chimera's own errors: an error raised inside
the actor as itself, a dead or restarting actor as `ActorUnavailableError`.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chimera.errors import ChimeraError

log = logging.getLogger(__name__)

T = TypeVar("T")


class ActorError(ChimeraError):
    """A call to an actor failed for a reason other than the actor's own typed error."""


class ActorUnavailableError(ActorError):
    """The actor is not running: it failed to start, died, or is being restarted."""


@dataclass(frozen=True)
class ActorSpec:
    """How one actor is created: its name, placement and restart policy."""

    name: str  # unique within the Ray namespace; a process that finds it running reuses it
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)  # custom node resources, e.g. {"memory_node": 1}
    max_restarts: int = -1  # Ray reruns the constructor after a crash, this many times (-1: always)
    max_task_retries: int = 0  # Ray resubmits calls in flight when it died (0: callers decide, `call_actor`)
    max_concurrency: int = 1
    detached: bool = False  # outlives the process that created it (a worker pool on a cluster outlives an API)


def start_actor(cls: type, spec: ActorSpec, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
    """The running actor named `spec.name`, created from `cls(*args, **kwargs)` unless it already runs.

    Returns:
        The actor handle, and whether this call created it (the creator is the one that stops it).
    """
    import ray

    try:
        return ray.get_actor(spec.name), False
    except ValueError:  # no actor of that name: create it
        pass
    options = {
        "name": spec.name,
        "num_cpus": spec.num_cpus,
        "num_gpus": spec.num_gpus,
        "resources": dict(spec.resources) or None,
        "max_restarts": spec.max_restarts,
        "max_task_retries": spec.max_task_retries,
        "max_concurrency": spec.max_concurrency,
        "lifetime": "detached" if spec.detached else None,
    }
    handle: Any = ray.remote(cls).options(**options).remote(*args, **kwargs)
    log.info("started actor %s (%s)", spec.name, cls.__name__)
    return handle, True


async def call_actor(call: Callable[[], Awaitable[T]], *, retry_for_s: float = 0.0) -> T:
    """Make an actor call and await it, turning Ray's wrappers back into Chimera's errors.

    Args:
        call: makes the call (`lambda: actor.method.remote(...)`), so that it can be made again.
        retry_for_s: for idempotent calls: while the actor is unavailable (dead and being restarted by its
            restart policy), call again with backoff for up to this long. 0: at most once.

    Raises:
        ChimeraError: the typed error the actor raised, as itself.
        ActorUnavailableError: the actor is not running (died, restarting, never started) and did not come back
            within `retry_for_s`.
        ActorError: the actor raised something that is not a Chimera error (a bug there).
    """
    deadline, delay = time.monotonic() + retry_for_s, 0.1
    while True:
        try:
            return await _unwrapped(call())
        except ActorUnavailableError:
            if time.monotonic() + delay > deadline:
                raise
            log.info("actor unavailable; calling again in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)


async def _unwrapped(ref: Awaitable[T]) -> T:
    from ray.exceptions import ActorUnavailableError as RayActorUnavailable
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return await ref
    except RayTaskError as e:
        if isinstance(e.cause, ChimeraError):
            raise e.cause from e
        raise ActorError(f"the actor failed: {e}") from e
    except (RayActorError, RayActorUnavailable) as e:
        raise ActorUnavailableError(f"the actor is not running (it failed to start, died or is restarting): {e}") from e


def stop_actor(handle: Any) -> None:
    """Kill the actor for good (no restart)."""
    import ray

    ray.kill(handle, no_restart=True)
