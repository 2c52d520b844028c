"""Task workers on Ray: one `TaskWorker` per actor, created through `actors.py` (named, placed by the config's
resources, restarted by Ray when its process dies), and a pool that keeps between `tasks.min_workers` and
`tasks.max_workers` of them running, by the queue's depth.

A worker actor keeps nothing that matters in its process: its leases are entries in Redis, its agent runs are
checkpointed there. Killed, it is restarted under the same name; the tasks it held are claimed again after the
lease (by it or any other worker) and continue from their last checkpoint.
"""

import asyncio
import logging
import os
import threading
from typing import Any

from chimera.cluster.actors import ActorSpec, start_actor, stop_actor
from chimera.config import ChimeraConfig

log = logging.getLogger(__name__)
WORKER_PREFIX = "chimera-task-worker-"


class TaskWorkerActor:
    """A Ray actor around one `TaskWorker`. The worker's event loop runs in a thread of its own, started by the
    constructor, so that a restarted actor (Ray reruns the constructor) is claiming again at once."""

    def __init__(self, config_json: str, redis_url: str, name: str) -> None:
        self._name = name
        self._config = ChimeraConfig.model_validate_json(config_json)
        self._redis_url = redis_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Any = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="task-worker", daemon=True)
        self._thread.start()

    async def _serve(self) -> None:
        from chimera.cluster.engines import engine_clients
        from chimera.service import task_queue
        from chimera.tasks.runners import default_runners
        from chimera.tasks.worker import TaskWorker

        config, tasks = self._config, self._config.tasks
        self._worker = TaskWorker(
            task_queue(config, self._redis_url),
            default_runners(config, self._redis_url, lambda: engine_clients(config)),
            name=self._name,
            concurrency=tasks.worker_concurrency,
            cancel_grace_s=tasks.cancel_grace_s,
            retry_backoff_s=tasks.retry_backoff_s,
        )
        self._loop = asyncio.get_running_loop()
        self._started.set()
        await self._worker.run()

    def info(self) -> dict[str, Any]:
        """Who this worker is and what it runs: name, pid, node, the ids of its running tasks."""
        import ray

        self._started.wait(timeout=10)
        running = sorted(self._worker.running) if self._worker is not None else []
        return {"name": self._name, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "running": running, "alive": self._thread.is_alive()}  # fmt: skip

    def drain(self) -> None:
        """Claim nothing more (the running tasks finish); the pool stops the actor once it is idle."""
        if self._loop is not None and self._worker is not None:
            self._loop.call_soon_threadsafe(self._worker.stop)


class TaskWorkerPool:
    """Keeps the config's worker actors running: `min_workers` always, one more per `scale_interval_s` while more
    than `tasks_per_worker` tasks per worker wait, and back down to `min_workers` when none wait (the newest worker
    is drained, then stopped once idle)."""

    def __init__(self, config: ChimeraConfig, redis_url: str) -> None:
        self.config = config
        self.redis_url = redis_url
        self.workers: dict[str, Any] = {}  # name → handle
        self._stopping = threading.Event()
        self._scaling = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start `min_workers` actors (reusing running ones of the same names) and the scaling loop."""
        for i in range(self.config.tasks.min_workers):
            self._add(i)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._scale_loop()), name="task-pool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scaling and stop the workers this pool started (detached ones on a cluster are left running)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.config.ray.address:
            for handle in self.workers.values():
                stop_actor(handle)
        self.workers.clear()

    def infos(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Each worker's `info()` (name, pid, node, running tasks)."""
        import ray

        return list(ray.get([h.info.remote() for h in self.workers.values()], timeout=timeout_s))

    def _add(self, index: int) -> None:
        tasks = self.config.tasks
        name = f"{WORKER_PREFIX}{index}"
        spec = ActorSpec(name, num_cpus=tasks.num_cpus, resources=tasks.resources, max_restarts=-1, max_concurrency=4,
                         detached=bool(self.config.ray.address))  # fmt: skip
        self.workers[name], _ = start_actor(TaskWorkerActor, spec, self.config.model_dump_json(), self.redis_url, name)

    async def _scale_loop(self) -> None:
        from chimera.service import task_queue

        queue = task_queue(self.config, self.redis_url)
        try:
            while not await asyncio.to_thread(self._stopping.wait, self.config.tasks.scale_interval_s):
                try:
                    await self.scale(await queue.depth())
                except Exception:  # a scaling round that fails (Redis or Ray away) is tried again next round
                    log.exception("task worker scaling failed")
        finally:
            await queue.close()

    async def scale(self, depth: int) -> None:
        """One scaling round for `depth` waiting tasks: add one worker, or drain and stop the newest idle one."""
        with self._scaling:  # the scaling loop's thread, or a caller's
            await self._scale(depth)

    async def _scale(self, depth: int) -> None:
        tasks = self.config.tasks
        count = len(self.workers)
        if depth > count * tasks.tasks_per_worker and count < tasks.max_workers:
            self._add(count)
            log.info("task queue holds %d: started worker %d of at most %d", depth, count + 1, tasks.max_workers)
        elif depth == 0 and count > tasks.min_workers:
            name = f"{WORKER_PREFIX}{count - 1}"
            if await asyncio.to_thread(self._stopped_if_idle, self.workers[name]):
                del self.workers[name]
                log.info("task queue empty: stopped idle worker %s", name)

    @staticmethod
    def _stopped_if_idle(handle: Any) -> bool:
        """Stop the worker if it runs nothing (it is drained first: a task it claimed in between would be claimed
        again after its lease, so nothing is lost either way)."""
        import ray

        if ray.get(handle.info.remote(), timeout=30)["running"]:
            return False
        ray.get(handle.drain.remote(), timeout=30)
        stop_actor(handle)
        return True
