"""The running stack for one config: tracing, Redis, Ray, the engines and the task workers (through `cluster/`),
then the service.

`chimera serve` owns one `Runtime`. Everything that touches Ray is in `cluster/`; everything else is wired by
`chimera.service.build_service`, which tests run without Ray on scripted engines.
"""

import logging
from dataclasses import dataclass

from chimera.cluster.engines import attach_engines, start_engines, stop_engines
from chimera.cluster.ray_runtime import connect_ray, disconnect_ray
from chimera.cluster.task_workers import TaskWorkerPool
from chimera.cluster.tracing import setup_tracing
from chimera.config import ChimeraConfig
from chimera.guardrails.factory import build_rails
from chimera.memory.redis_server import EmbeddedRedis
from chimera.models.router.factory import build_router
from chimera.service import Service, build_service
from chimera.spans.factory import span_store_path

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Start and stop everything a config describes, in dependency order."""

    config: ChimeraConfig
    service: Service | None = None
    _redis: EmbeddedRedis | None = None
    _ray_connected: bool = False
    workers: TaskWorkerPool | None = None

    def start(self) -> Service:
        cfg = self.config
        data_dir = cfg.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        setup_tracing(cfg.tracing, store_path=span_store_path(data_dir), role="api")
        redis_url = cfg.redis.url
        if redis_url is None:
            self._redis = EmbeddedRedis(data_dir / "redis")
            redis_url = self._redis.start()
        # before Ray and the engines: a missing head or a broken rails config fails in seconds
        router = build_router(cfg.router)
        rails = build_rails(cfg.guardrails, data_dir)
        self._ray_connected = connect_ray(cfg)
        engines = start_engines(cfg) if cfg.ray.owns_engines else attach_engines(cfg)
        self.service = build_service(cfg, engines, redis_url=redis_url, rails=rails, router=router)
        self.workers = TaskWorkerPool(cfg, redis_url)  # task workers: actors of their own, on the same engines
        self.workers.start()
        return self.service

    def stop(self) -> None:
        """Stop the task workers and delete the engines' Serve applications if this process deployed them, leave
        Ray (stopping it if we started it), then stop Redis."""
        if self.workers is not None:
            self.workers.stop()
        if self.service is not None and self.config.ray.owns_engines:
            stop_engines(list(self.service.engines))
        if self._ray_connected:
            disconnect_ray()
        if self._redis is not None:
            self._redis.stop()
