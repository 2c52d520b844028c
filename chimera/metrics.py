"""Prometheus metrics of one Chimera service: the metric objects on a registry of their own, and the small calls
the request path makes (each call site is one line).

A registry per service, not the process-wide default, so that several apps in one process (the tests) do not
collide, and a scrape shows exactly one server. `GET /metrics` (chimera/api/metrics_routes.py) refreshes the
gauges read from elsewhere (the task queue, the engines' last health poll) and renders the text format.
Label values are bounded: models outside the served list count as `other`, experts and rails are Chimera's own.
"""

from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chimera.guardrails.base import RailResult
from chimera.models.engine.base import EngineHealth
from chimera.models.router.base import RouteDecision

CONTENT_TYPE = CONTENT_TYPE_LATEST
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
RETRIEVAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Chimera's request, routing, guardrail, retrieval, task and engine metrics.

    Args:
        models: the `model` values the chat endpoint serves; any other value is labelled `other`.
    """

    def __init__(self, models: Collection[str] = ()) -> None:
        self.models = frozenset(models)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "chimera_requests",
            "Chat requests by model and outcome: ok, refused (a rail), disconnected, or the HTTP status of the error.",
            ["model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "chimera_request_duration_seconds",
            "Chat request time, arrival to the end of the answer.",
            ["model"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "chimera_ttft_seconds",
            "Time from a request's arrival to its first answer text.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "chimera_tokens",
            "Tokens by expert; direction `in` (prompt) or `out` (completion).",
            ["expert", "direction"],
            registry=r,
        )
        self.decisions = Counter(
            "chimera_router_decisions",
            "Router decisions by expert chosen; `spilled`: sent to the runner-up as the first choice was saturated; "
            "`explicit`: the model named it.",
            ["expert", "spilled", "explicit"],
            registry=r,
        )
        self.refusals = Counter(
            "chimera_guardrail_refusals",
            "Requests or answers a guardrail refused, by rail and stage (input, output).",
            ["rail", "stage"],
            registry=r,
        )
        self.retrieval = Histogram(
            "chimera_retrieval_duration_seconds",
            "Document search time (all retrievers, fusion, rerank); `kind`: search (the tool) or ground (the agent's "
            "first step).",
            ["kind"],
            buckets=RETRIEVAL_BUCKETS,
            registry=r,
        )
        self.tasks_waiting = Gauge("chimera_tasks_waiting", "Tasks queued for a worker.", registry=r)
        self.tasks_running = Gauge("chimera_tasks_running", "Tasks a worker holds now.", registry=r)
        self.task_workers = Gauge("chimera_task_workers", "Task workers seen in the last 15 s.", registry=r)
        self.engines = Gauge("chimera_engines", "Engines configured.", registry=r)
        self.engines_healthy = Gauge("chimera_engines_healthy", "Engines whose last health poll passed.", registry=r)
        self.engine_running = Gauge(
            "chimera_engine_running_requests",
            "Requests an engine was working on at its last poll.",
            ["engine"],
            registry=r,
        )

    def model(self, model: str) -> str:
        """The label for a requested model: itself when served, else `other` (bounded cardinality)."""
        return model if model in self.models else "other"

    def first_text(self, model: str, seconds: float) -> None:
        """A request's first answer text went out `seconds` after it arrived."""
        self.ttft.labels(self.model(model)).observe(seconds)

    def request_done(self, model: str, status: str | int, seconds: float) -> None:
        """A chat request ended with `status` (`ok`, `refused`, `disconnected`, or an HTTP error status)."""
        label = self.model(model)
        self.requests.labels(label, str(status)).inc()
        self.duration.labels(label).observe(seconds)

    def used(self, expert: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens an answer on `expert` took in and gave out."""
        self.tokens.labels(expert, "in").inc(prompt_tokens)
        self.tokens.labels(expert, "out").inc(completion_tokens)

    def routed(self, decision: RouteDecision) -> None:
        """The router (or the request) chose an expert."""
        self.decisions.labels(decision.expert, _flag(decision.spilled), _flag(decision.explicit)).inc()

    def railed(self, stage: str, verdict: RailResult) -> None:
        """A rail's verdict at `stage`; counted when it refused."""
        if not verdict.allowed:
            self.refusals.labels(verdict.rail or stage, stage).inc()

    def searched(self, kind: str, seconds: float) -> None:
        """A document search took `seconds`."""
        self.retrieval.labels(kind).observe(seconds)

    def render(self, tasks: Mapping[str, int] | None, engines: Mapping[str, EngineHealth | str]) -> bytes:
        """The text format, after setting the gauges from the task queue's stats (None: unavailable, left as they
        were) and the engines' last polled health (a string: why the poll failed)."""
        if tasks is not None:
            self.tasks_waiting.set(tasks.get("waiting", 0))
            self.tasks_running.set(tasks.get("running", 0))
            self.task_workers.set(tasks.get("workers", 0))
        self.engines.set(len(engines))
        healthy = [h for h in engines.values() if isinstance(h, EngineHealth) and h.healthy]
        self.engines_healthy.set(len(healthy))
        for name, health in engines.items():
            self.engine_running.labels(name).set(health.running if isinstance(health, EngineHealth) else 0)
        return generate_latest(self.registry)


def _flag(value: bool) -> str:
    return "true" if value else "false"
