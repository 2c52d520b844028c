"""Task workers for tests, in this process: real Redis, the runners of the real chat service (on scripted engines)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chimera.config import ChimeraConfig
from chimera.service import Service, task_queue
from chimera.tasks.runners import AgentRunner, EvalRunner, IngestRunner
from chimera.tasks.worker import TaskRunner, TaskWorker


@asynccontextmanager
async def task_workers(
    config: ChimeraConfig, service: Service, redis_url: str, count: int = 1
) -> AsyncIterator[list[TaskWorker]]:
    """`count` workers claiming from the config's queue, their agent tasks run by `service`'s chat service."""

    async def agent() -> TaskRunner:
        return AgentRunner(service.chat)

    async def ingest() -> TaskRunner:
        return IngestRunner(config, redis_url)

    async def evaluation() -> TaskRunner:
        return EvalRunner(config)

    runners = {"agent": agent, "ingest": ingest, "eval": evaluation}
    tasks = config.tasks
    workers = [
        TaskWorker(
            task_queue(config, redis_url),
            runners,
            name=f"test-worker-{i}",
            concurrency=tasks.worker_concurrency,
            cancel_grace_s=tasks.cancel_grace_s,
            retry_backoff_s=tasks.retry_backoff_s,
        )
        for i in range(count)
    ]
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*running)
        for worker in workers:
            await worker.queue.close()
