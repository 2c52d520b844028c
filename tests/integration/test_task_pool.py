"""The task worker pool on a real local Ray: `min_workers` kept, one more per round while the queue is deep (up to
`max_workers`), back to `min_workers` when it is empty; a worker actor SIGKILLed is restarted by Ray."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from ray.exceptions import RayError

from chimera.cluster.ray_runtime import ray_connection
from chimera.cluster.task_workers import TaskWorkerPool
from chimera.config import ChimeraConfig, RayConfig, TasksConfig, TracingConfig, load_config

pytestmark = pytest.mark.integration


@pytest.fixture
def config(tmp_path: Path) -> Iterator[ChimeraConfig]:
    config = load_config(Path(__file__).parents[2] / "configs" / "local.yaml")
    tasks = TasksConfig(min_workers=1, max_workers=3, tasks_per_worker=2, scale_interval_s=3600)
    config = config.model_copy(update={"data_dir": tmp_path, "tasks": tasks, "tracing": TracingConfig(exporter="none"),
                                       "ray": RayConfig(num_cpus=2, namespace="chimera-test-pool")})  # fmt: skip
    with ray_connection(config):
        yield config


def test_the_pool_follows_the_queue_and_ray_restarts_a_killed_worker(config: ChimeraConfig, redis_url: str) -> None:
    url = f"{redis_url}?db=13"
    redis.Redis.from_url(url).flushdb()
    pool = TaskWorkerPool(config, url)
    pool.start()
    try:
        assert sorted(pool.workers) == ["chimera-task-worker-0"]
        for _ in range(4):
            asyncio.run(pool.scale(10))  # 10 waiting, 2 per worker wanted: one more per round, at most 3
        infos = pool.infos(timeout_s=120)
        assert sorted(i["name"] for i in infos) == [f"chimera-task-worker-{i}" for i in range(3)]
        assert len({i["pid"] for i in infos}) == 3 and all(i["alive"] for i in infos)
        for _ in range(3):
            asyncio.run(pool.scale(0))
        assert sorted(pool.workers) == ["chimera-task-worker-0"]  # back to min_workers

        before = pool.infos()[0]["pid"]
        os.kill(before, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                after = pool.infos()[0]["pid"]
            except RayError:  # restarting: the call fails until the new process is up
                after = None
            if after not in (None, before):
                break
            assert time.monotonic() < deadline, "Ray did not restart the killed worker actor"
            time.sleep(0.5)
        seen = {w.decode() for w in redis.Redis.from_url(url).hkeys("chimera:tasks:workers")}
        assert "chimera-task-worker-0" in seen  # the restarted worker announces itself again
    finally:
        pool.stop()
