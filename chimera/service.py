"""Wire a `ChatService` from a config and running engines: no Ray, no processes started here.

`build_service` is what `chimera serve` runs after `cluster.engines.start_engines`, and what the fast tests run on
scripted engines in-process. It connects to Redis (sessions, agent checkpoints, extractive memory), loads the
router, the rails and the document index, and hands each expert its engine.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from chimera.agents.runs import AgentRuns
from chimera.agents.state import checkpoint_serializer
from chimera.chat import ChatService
from chimera.cluster.deployments import engine_capacity
from chimera.cluster.load import LoadMonitor
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError
from chimera.guardrails.base import Rails
from chimera.guardrails.factory import build_rails
from chimera.guardrails.guarded_tool import guard_tool
from chimera.memory.checkpoint.redis_saver import RedisCheckpointSaver
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.factory import build_long_memory, describe
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.models.engine.base import EngineError, LLMEngine
from chimera.models.expert import Expert
from chimera.models.router.base import Router
from chimera.models.router.factory import build_router
from chimera.tools.base import Tool
from chimera.tools.calculator import Calculator
from chimera.tools.graph_query import GraphQuery
from chimera.tools.hybrid_search import HybridSearch
from chimera.tools.run_python import RunPython
from chimera.tools.search.factory import LiveIndex, open_graph_store

log = logging.getLogger(__name__)


@dataclass
class Service:
    """The chat service and what it owns: the engines' load monitor, the checkpointer, the session memory."""

    chat: ChatService
    engines: Mapping[str, LLMEngine]
    load: LoadMonitor
    checkpointer: RedisCheckpointSaver
    memory: LongMemory

    async def astart(self) -> None:
        """Start what lives in the server's event loop: the load monitor."""
        self.load.start()

    async def aclose(self) -> None:
        """Stop what lives in the server's event loop; close its connections (engines are stopped by their owner)."""
        await self.load.stop()
        await self.chat.drain()
        await self.chat.sessions.close()
        await self.memory.close()
        await self.checkpointer.aclose()
        self.checkpointer.close()

    async def health(self) -> dict[str, object]:
        """Each engine's health and the session memory's, for /healthz."""
        engines: dict[str, object] = {}
        ok = True
        for name, engine in self.engines.items():
            try:
                report = await engine.health()
            except EngineError as e:  # a dead replica is a health finding, not a crash of /healthz
                engines[name], ok = {"healthy": False, "error": str(e)}, False
                continue
            engines[name] = report.model_dump()
            ok = ok and report.healthy
        memory: dict[str, object] = {"mode": self.memory.mode, "detail": describe(self.memory)}
        try:
            replicas = await self.memory.health()
        except ChimeraError as e:
            memory["error"], ok = str(e), False
        else:
            if replicas:
                memory["replicas"] = [r.model_dump() for r in replicas]
        return {"status": "ok" if ok else "degraded", "engines": engines, "memory": memory}


def build_service(
    config: ChimeraConfig,
    engines: Mapping[str, LLMEngine],
    *,
    redis_url: str,
    rails: Rails | None = None,
    router: Router | None = None,
    memory: LongMemory | None = None,
) -> Service:
    """The chat service over `engines` (one per `config.engines` name), its state in the Redis at `redis_url`.

    Args:
        rails, router, memory: built from the config when None (tests pass their own, or the same across services).

    Raises:
        ConfigError: an expert names an engine that `engines` lacks.
    """
    from chimera.errors import ConfigError

    missing = sorted({s.engine for s in config.experts.values()} - set(engines))
    if missing:
        raise ConfigError(f"no running engine for {', '.join(missing)}")
    router = router or build_router(config.router)
    rails = rails or build_rails(config.guardrails, config.data_dir.resolve())
    experts = {
        name: Expert(name, spec, engines[spec.engine], config.engines[spec.engine].served_name or spec.engine)
        for name, spec in config.experts.items()
    }
    load = LoadMonitor(
        engines,
        {expert: spec.engine for expert, spec in config.experts.items()},
        {name: engine_capacity(spec, config.router.capacity_factor) for name, spec in config.engines.items()},
        interval_s=config.router.load_poll_s,
    )
    ttl = config.redis.session_ttl_s
    checkpointer = RedisCheckpointSaver(redis_url, ttl_s=ttl, serde=checkpoint_serializer())
    memory = memory or build_long_memory(config.memory, redis_url, ttl_s=ttl)
    runs = AgentRuns(
        experts=experts,
        tools=agent_tools(config, rails),
        agent=config.agent,
        checkpointer=checkpointer,
        memory=memory,
        recall_max_tokens=config.memory.recall_max_tokens,
    )
    chat = ChatService(
        experts=experts,
        router=router,
        sessions=RedisSessionStore(redis_url, ttl_s=ttl, max_messages=config.redis.max_session_messages),
        rails=rails,
        runs=runs,
        load=load.snapshot,
        read_after_turn=config.memory.read_after_turn,
    )
    return Service(chat, engines, load, checkpointer, memory)


def agent_tools(config: ChimeraConfig, rails: Rails) -> dict[str, Tool]:
    """Every tool the agents may be offered; tools that reach outside (code, Cypher) pass the tool-input rail."""
    documents = LiveIndex(config.search, config.index_dir)
    documents.get()  # load the index and its embedder now, not in the first question's time
    search = config.search
    return {
        Calculator.name: Calculator(),
        HybridSearch.name: HybridSearch(
            documents.get, k=search.agent_passages, min_similarity=search.ground_min_similarity, rails=rails
        ),
        # Opened per call, so that `chimera ingest` can write the embedded store between queries.
        GraphQuery.name: guard_tool(
            GraphQuery(
                lambda: open_graph_store(search, config.index_dir),
                keep_open=False,
                available=lambda: documents.get() is not None,
            ),
            rails,
            "cypher",
        ),
        RunPython.name: guard_tool(RunPython(), rails, "code"),
    }
