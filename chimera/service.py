"""Wire a `ChatService` from a config and running engines: no Ray, no processes started here.

`build_service` is what `chimera serve` runs after `cluster.engines.start_engines`, and what the fast tests run on
scripted engines in-process. It connects to Redis (sessions, agent checkpoints, extractive memory), loads the
router, the rails and the document index, and hands each expert its engine.
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.agents.citations import CitationCheck
from chimera.agents.claim_support import OverlapScorer
from chimera.agents.runs import AgentRuns
from chimera.agents.state import checkpoint_serializer
from chimera.chat import ChatService, served_models
from chimera.cluster.deployments import engine_capacity
from chimera.cluster.load import LoadMonitor
from chimera.config import AgentConfig, ChimeraConfig, McpServerConfig
from chimera.documents import DocumentService
from chimera.embeddings import EmbeddingService, embedding_model_id
from chimera.errors import ChimeraError
from chimera.guardrails.base import Rails
from chimera.guardrails.factory import build_rails
from chimera.guardrails.guarded_tool import guard_tool
from chimera.identity.keys import Authenticator, RedisKeyStore
from chimera.identity.limits import Limiter
from chimera.memory.checkpoint.redis_saver import RedisCheckpointSaver
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.factory import build_long_memory, describe
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.metrics import Metrics
from chimera.models.embedding.base import Embedder
from chimera.models.embedding.minilm import SentenceEmbedder
from chimera.models.engine.base import EngineHealth, LLMEngine
from chimera.models.expert import Expert
from chimera.models.router.base import Router
from chimera.models.router.factory import build_router
from chimera.sessions import SessionService
from chimera.spans.factory import open_span_store, span_store_path
from chimera.spans.store import SpanStore, SpanStoreError
from chimera.tasks.queue import TaskQueue
from chimera.tasks.service import TaskService
from chimera.tools.base import Tool
from chimera.tools.calculator import Calculator
from chimera.tools.graph_query import GraphQuery
from chimera.tools.hybrid_search import HybridSearch
from chimera.tools.mcp import discover
from chimera.tools.run_python import RunPython
from chimera.tools.search.factory import LiveIndex, embedding_model_dir, open_graph_store

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 0.5  # each of /healthz's live checks (Redis, memory); engines are read from the last poll
PRUNE_EVERY_S = 300.0  # the span store's retention runs this often (and after every so many spans written)


@dataclass
class Service:
    """The chat service and what it owns: the engines' load monitor, the checkpointer, the session memory, who
    may call it (API keys → principals) within which limits, and the span store the trace API reads (None: tracing
    is off)."""

    chat: ChatService
    engines: Mapping[str, LLMEngine]
    load: LoadMonitor
    checkpointer: RedisCheckpointSaver
    memory: LongMemory
    authenticator: Authenticator
    limiter: Limiter
    redis: aioredis.Redis  # for /healthz's ping
    tasks: TaskService
    metrics: Metrics  # GET /metrics: what the chat service, its tools and this service count
    embeddings: EmbeddingService  # POST /v1/embeddings: the dense search's embedding model
    sessions: SessionService  # the sessions API: a principal's sessions listed, read, deleted
    documents: DocumentService  # the documents API: a tenant's indexed documents listed, read, deleted
    spans: SpanStore | None = None
    mcp_servers: list[McpServerConfig] = field(default_factory=list)  # their tools join the agents' at start
    _pruning: "asyncio.Task[None] | None" = field(default=None, init=False, repr=False)

    async def astart(self) -> None:
        """Start what lives in the server's event loop: the load monitor (after a first poll, so that the router
        and /healthz know the engines from the first request on), and the span store's retention timer."""
        await self.load.poll_once()
        self.load.start()
        if self.mcp_servers:
            self.chat.runs.tools.update(await discover(self.mcp_servers, self.chat.rails))
        if self.spans is not None:
            self._pruning = asyncio.create_task(_prune_every(self.spans, PRUNE_EVERY_S))

    async def aclose(self) -> None:
        """Stop what lives in the server's event loop; close its connections (engines are stopped by their owner)."""
        await self.load.stop()
        await self.chat.drain()
        await self.chat.sessions.close()
        await self.memory.close()
        await self.checkpointer.aclose()
        self.checkpointer.close()
        await self.authenticator.aclose()
        await self.limiter.close()
        await self.tasks.close()
        await self.documents.close()
        await self.redis.aclose()
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
        if self.spans is not None:
            self.spans.close()

    async def health(self) -> dict[str, object]:
        """For /healthz, within about a second whatever is down: each engine's last polled report (never a call
        to the engines), Redis answering a ping, and the session memory's replicas."""
        engines: dict[str, object] = {}
        ok = True
        for name, last in self.engine_reports().items():
            if isinstance(last, EngineHealth):
                engines[name] = last.model_dump()
                ok = ok and last.healthy
            else:
                engines[name] = {"healthy": False, "error": last}
                ok = False
        redis_error, memory, tasks = await asyncio.gather(
            self._redis_error(), self._memory_report(), self._tasks_report()
        )
        ok = ok and redis_error is None and "error" not in memory
        report: dict[str, object] = {"status": "ok" if ok else "degraded", "engines": engines, "memory": memory,
                                     "tasks": tasks}  # fmt: skip
        report["redis"] = {"ok": True} if redis_error is None else {"ok": False, "error": redis_error}
        return report

    def engine_reports(self) -> dict[str, EngineHealth | str]:
        """Each engine's last polled report, or why there is none (a failed poll, or no poll yet)."""
        polled = self.load.engine_health()
        return {name: polled.get(name) or "not polled yet" for name in self.engines}

    async def _redis_error(self) -> str | None:
        try:
            await asyncio.wait_for(self.redis.ping(), HEALTH_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as e:
            return str(e) or f"no answer within {HEALTH_TIMEOUT_S:g} s"
        return None

    async def _tasks_report(self) -> dict[str, object]:
        """Tasks waiting and running, and the workers seen in the last seconds (informative: not a health verdict,
        as a deployment may run its workers elsewhere)."""
        try:
            return dict(await asyncio.wait_for(self.tasks.queue.stats(), HEALTH_TIMEOUT_S))
        except (RedisError, OSError, TimeoutError) as e:
            return {"error": str(e) or f"no answer within {HEALTH_TIMEOUT_S:g} s"}

    async def _memory_report(self) -> dict[str, object]:
        memory: dict[str, object] = {"mode": self.memory.mode, "detail": describe(self.memory)}
        try:
            replicas = await asyncio.wait_for(self.memory.health(), HEALTH_TIMEOUT_S)
        except (ChimeraError, TimeoutError) as e:
            memory["error"] = str(e) or f"no answer within {HEALTH_TIMEOUT_S:g} s"
        else:
            if replicas:
                memory["replicas"] = [r.model_dump() for r in replicas]
        return memory


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
    metrics = Metrics(served_models())
    embeddings = embedding_service(config)
    runs = AgentRuns(
        experts=experts,
        tools=agent_tools(config, rails, metrics),
        agent=config.agent,
        checkpointer=checkpointer,
        memory=memory,
        recall_max_tokens=config.memory.recall_max_tokens,
        citation_check=citation_check(config.agent, embeddings.embedder),
    )
    sessions = RedisSessionStore(redis_url, ttl_s=ttl, max_messages=config.redis.max_session_messages)
    chat = ChatService(
        experts=experts,
        router=router,
        sessions=sessions,
        rails=rails,
        runs=runs,
        load=load.snapshot,
        read_after_turn=config.memory.read_after_turn,
        max_queue_factor=config.server.max_queue_factor,
        unnamed_session_ttl_s=config.redis.unnamed_session_ttl_s,
        metrics=metrics,
    )
    server = config.server
    keys = RedisKeyStore(redis_url) if server.key_store else None
    authenticator = Authenticator(server, keys)
    log.info("%s", authenticator.describe())
    limiter = Limiter(redis_url, request_timeout_s=server.request_timeout_s)
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=HEALTH_TIMEOUT_S, socket_connect_timeout=HEALTH_TIMEOUT_S)
    tasks = TaskService(task_queue(config, redis_url), sessions, max_input_bytes=config.tasks.max_input_bytes)
    spans = None
    if config.tracing.exporter != "none":
        spans = open_span_store(config.tracing, span_store_path(config.data_dir.resolve()))
    return Service(chat, engines, load, checkpointer, memory, authenticator, limiter, redis, tasks, metrics,
                   embeddings, SessionService(sessions, runs),
                   DocumentService(config.search, config.index_dir, redis_url), spans,
                   config.tools.mcp_servers)  # fmt: skip


def citation_check(agent: AgentConfig, embedder: Embedder) -> CitationCheck | None:
    """How agent answers' citations are checked (`agent.citations`), on the dense search's embedder."""
    if agent.citations == "off":
        return None
    return CitationCheck(OverlapScorer(embedder), unsupported=agent.citations)


def embedding_service(config: ChimeraConfig) -> EmbeddingService:
    """POST /v1/embeddings on the dense search's model, as the index loads it (loaded at the first request)."""
    folder = embedding_model_dir(config.search)
    embedder = SentenceEmbedder(folder, max_tokens=config.search.embedding_max_tokens)
    return EmbeddingService(embedding_model_id(config.search.embedding_model, folder), embedder)


async def _prune_every(store: SpanStore, interval_s: float) -> None:
    """Apply the store's retention now and every `interval_s` (off the event loop: deleting takes a while)."""
    while True:
        try:
            deleted = await asyncio.to_thread(store.prune)
        except SpanStoreError as e:
            log.warning("span store retention failed (next try in %g s): %s", interval_s, e)
        else:
            if deleted:
                log.info("span store retention deleted %d spans", deleted)
        await asyncio.sleep(interval_s)


def task_queue(config: ChimeraConfig, redis_url: str) -> TaskQueue:
    """The task queue as the config sets it up (the API submits to it, the workers claim from it)."""
    tasks = config.tasks
    return TaskQueue(
        redis_url,
        lease_s=tasks.lease_s,
        max_attempts=tasks.max_attempts,
        max_running_per_tenant=tasks.max_running_per_tenant,
        result_ttl_s=tasks.result_ttl_s,
    )


def agent_tools(config: ChimeraConfig, rails: Rails, metrics: Metrics | None = None) -> dict[str, Tool]:
    """Every tool the agents may be offered; tools that reach outside (code, Cypher) pass the tool-input rail;
    searches are timed in `metrics`."""
    documents = LiveIndex(config.search, config.index_dir)
    documents.get()  # load the index and its embedder now, not in the first question's time
    search = config.search
    return {
        Calculator.name: Calculator(),
        HybridSearch.name: HybridSearch(
            documents.get,
            k=search.agent_passages,
            min_similarity=search.ground_min_similarity,
            rails=rails,
            metrics=metrics,
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
