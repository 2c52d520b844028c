"""The running stack for one config: tracing, Redis, Ray with one Serve application per engine, the service.

`chimera serve` owns one `Runtime`; tests and benchmarks start one the same way.
"""

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chimera.agent_runs import AgentRuns
from chimera.agents.state import checkpoint_serializer
from chimera.chat import ChatService
from chimera.cluster.deployments import app_name, deployment_options, engine_args_for_cluster, engine_capacity
from chimera.cluster.load import LoadMonitor
from chimera.cluster.tracing import resolve_exporter, setup_tracing, trace_file, worker_env
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError
from chimera.guardrails.factory import build_rails
from chimera.guardrails.guarded_tool import guard_tool
from chimera.memory.checkpoint.redis_saver import RedisCheckpointSaver
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.factory import build_long_memory, describe
from chimera.memory.long_context.mamba import MambaMemory
from chimera.memory.redis_server import EmbeddedRedis
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.models import provision
from chimera.models.expert import Expert
from chimera.models.router.factory import build_router
from chimera.models.specs import EngineSpec
from chimera.tools.calculator import Calculator
from chimera.tools.graph_query import GraphQuery
from chimera.tools.hybrid_search import HybridSearch
from chimera.tools.run_python import RunPython
from chimera.tools.search.factory import LiveIndex, open_graph_store

if TYPE_CHECKING:
    from chimera.cluster.serve_client import ServeEngineClient

log = logging.getLogger(__name__)


def local_engine_specs(config: ChimeraConfig, *, prepare: bool = True) -> dict[str, EngineSpec]:
    """Engine specs with `packaged:` models resolved to local folders (prepared first when `prepare`)."""
    if prepare:
        for name in provision.packaged_names_in_use([s.model for s in config.engines.values()]):
            provision.prepare(name, config.data_dir)
    return {
        name: spec.model_copy(update={"model": str(provision.resolve_model_path(spec.model, config.data_dir))})
        for name, spec in config.engines.items()
    }


@dataclass
class Runtime:
    """Start and stop everything a config describes, in dependency order."""

    config: ChimeraConfig
    service: ChatService | None = None
    _redis: EmbeddedRedis | None = None
    _checkpointer: RedisCheckpointSaver | None = None
    memory: LongMemory | None = None
    load: LoadMonitor | None = None
    _clients: dict[str, "ServeEngineClient"] = field(default_factory=dict)

    def start(self) -> ChatService:
        import ray
        from ray import serve

        from chimera.cluster.expert_server import ExpertServer
        from chimera.cluster.serve_client import ServeEngineClient

        cfg = self.config
        data_dir = cfg.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        exporter = resolve_exporter(cfg.tracing.exporter)
        traces = trace_file(data_dir)
        setup_tracing(exporter, service=cfg.tracing.service_name, role="api", path=traces)

        redis_url = cfg.redis.url
        if redis_url is None:
            self._redis = EmbeddedRedis(data_dir / "redis")
            redis_url = self._redis.start()

        router = build_router(cfg.router)  # before Ray and the engines: a missing head fails in seconds
        rails = build_rails(cfg.guardrails, data_dir)  # models, heads and rules load here too
        specs = local_engine_specs(cfg)
        if not ray.is_initialized():
            ray.init(
                address=cfg.ray.address,
                num_cpus=cfg.ray.num_cpus if cfg.ray.address is None else None,
                namespace=cfg.ray.namespace,
                include_dashboard=False,
                runtime_env={
                    "worker_process_setup_hook": "chimera.cluster.tracing.setup_worker_tracing",
                    "env_vars": worker_env(exporter, service=cfg.tracing.service_name, path=traces),
                },
            )
        serve.start(proxy_location="Disabled")
        for name, spec in specs.items():
            spec = engine_args_for_cluster(spec)
            app = serve.deployment(**deployment_options(spec))(ExpertServer).bind(spec)
            handle = serve.run(app, name=app_name(name), route_prefix=None)
            self._clients[name] = ServeEngineClient(handle)
            log.info("engine %s is serving", name)

        self.load = LoadMonitor(
            self._clients,
            {expert: spec.engine for expert, spec in cfg.experts.items()},
            {name: engine_capacity(spec, cfg.router.capacity_factor) for name, spec in cfg.engines.items()},
            interval_s=cfg.router.load_poll_s,
        )
        experts = {
            expert: Expert(
                expert, spec, self._clients[spec.engine], cfg.engines[spec.engine].served_name or spec.engine
            )
            for expert, spec in cfg.experts.items()
        }
        documents = LiveIndex(cfg.search, cfg.index_dir)
        documents.get()  # load the index and its embedder now, not in the first question's time
        self._checkpointer = RedisCheckpointSaver(
            redis_url, ttl_s=cfg.redis.session_ttl_s, serde=checkpoint_serializer()
        )
        self.memory = build_long_memory(cfg.memory, redis_url, ttl_s=cfg.redis.session_ttl_s)
        runs = AgentRuns(
            experts=experts,
            tools={
                Calculator.name: Calculator(),
                HybridSearch.name: HybridSearch(
                    documents.get,
                    k=cfg.search.agent_passages,
                    min_similarity=cfg.search.ground_min_similarity,
                    rails=rails,
                ),
                # Opened per call, so that `chimera ingest` can write the embedded store between queries.
                GraphQuery.name: guard_tool(
                    GraphQuery(
                        lambda: open_graph_store(cfg.search, cfg.index_dir),
                        keep_open=False,
                        available=lambda: documents.get() is not None,
                    ),
                    rails,
                    "cypher",
                ),
                RunPython.name: guard_tool(RunPython(), rails, "code"),
            },
            agent=cfg.agent,
            checkpointer=self._checkpointer,
            memory=self.memory,
            recall_max_tokens=cfg.memory.recall_max_tokens,
        )
        self.service = ChatService(
            experts=experts,
            router=router,
            sessions=RedisSessionStore(
                redis_url, ttl_s=cfg.redis.session_ttl_s, max_messages=cfg.redis.max_session_messages
            ),
            rails=rails,
            runs=runs,
            load=self.load.snapshot,
            read_after_turn=cfg.memory.read_after_turn,
        )
        return self.service

    async def health(self) -> dict[str, object]:
        """Each engine's health and load, for /healthz."""
        engines: dict[str, object] = {}
        ok = True
        for name, client in self._clients.items():
            try:
                report = await client.health()
                engines[name] = report.model_dump()
                ok = ok and report.healthy
            except Exception as e:  # a dead replica is a health finding, not a crash of /healthz
                engines[name] = {"healthy": False, "error": str(e)}
                ok = False
        memory: dict[str, object] = {}
        if self.memory is not None:
            memory = {"mode": self.memory.mode, "detail": describe(self.memory)}
            if isinstance(self.memory, MambaMemory):
                try:
                    memory["replicas"] = [h.model_dump() for h in await self.memory.health()]
                except ChimeraError as e:
                    memory["error"], ok = str(e), False
        return {"status": "ok" if ok else "degraded", "engines": engines, "memory": memory}

    async def astart(self) -> None:
        """Start what lives in the server's event loop: the load monitor."""
        if self.load is not None:
            self.load.start()

    async def aclose(self) -> None:
        """Stop what lives in the server's event loop; close its connections."""
        if self.load is not None:
            await self.load.stop()
        if self.service is not None:
            await self.service.drain()
            await self.service.sessions.close()
        if self.memory is not None:
            await self.memory.close()
        if self._checkpointer is not None:
            await self._checkpointer.aclose()
            self._checkpointer.close()

    def stop(self) -> None:
        """Tear down Serve apps, Ray (if we started it), then Redis."""
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        if self._redis is not None:
            self._redis.stop()
