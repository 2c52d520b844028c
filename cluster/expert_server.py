"""The Ray Serve deployment that hosts one engine; each replica is a Ray actor owning a full engine.

Experts with identical engine specs share one deployment; the caller sends each expert's own prompt and
sampling in the `GenerationRequest`.
"""

from collections.abc import AsyncIterator

from opentelemetry import trace

from chimera.cluster.tracing import (
    context_from_traceparent,
    flush_tracing,
    setup_worker_tracing,
    traced_generation,
)
from chimera.models.engine.base import (
    EngineHealth,
    EngineUnavailableError,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
)
from chimera.models.engine.vllm_engine import VLLMEngine
from chimera.models.specs import EngineSpec


class ExpertServer:
    """Serve replica body: starts the engine, streams generations under the caller's trace, reports health."""

    async def __init__(self, spec: EngineSpec, engine_cls: type[LLMEngine] = VLLMEngine) -> None:  # type: ignore[misc]
        setup_worker_tracing()  # idempotent; the worker_process_setup_hook usually did it already
        self._tracer = trace.get_tracer("chimera.cluster")
        self._model = spec.served_name or spec.model
        self._engine = engine_cls(spec)
        await self._engine.start()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; when the caller cancels (client gone), the engine aborts the request."""
        span = self._tracer.start_span(
            "engine.generate",
            context=context_from_traceparent(request.traceparent),
            kind=trace.SpanKind.SERVER,
            attributes={"gen_ai.request.model": self._model, "chimera.request_id": request.request_id},
        )
        async for delta in traced_generation(span, self._engine.generate(request)):
            yield delta

    async def health(self) -> EngineHealth:
        return await self._engine.health()

    async def check_health(self) -> None:
        """Serve's periodic health probe: a dead engine makes Serve replace the replica."""
        if not (await self._engine.health()).healthy:
            raise EngineUnavailableError(f"engine for {self._model} is unhealthy")

    async def __del__(self) -> None:
        await self._engine.shutdown()
        flush_tracing()
