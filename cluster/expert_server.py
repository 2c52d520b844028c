"""The Ray Serve deployment that hosts one engine; each replica is a Ray actor owning a full engine.

Experts with identical engine specs share one deployment; the caller sends each expert's own prompt and
sampling in the `GenerationRequest`. Each item of a Serve stream is one object sent to the caller, so deltas that
are ready together (the replica's loop was busy, or several requests' tokens came in one engine step) go out
merged (`coalesce_deltas`).
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

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

MAX_MERGED_DELTAS = 32  # engine deltas merged into one stream item at most
MAX_MERGED_CHARS = 1024  # and no more merged once an item holds this much text


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


async def coalesce_deltas(
    deltas: AsyncIterator[GenerationDelta], *, max_deltas: int = MAX_MERGED_DELTAS, max_chars: int = MAX_MERGED_CHARS
) -> AsyncGenerator[GenerationDelta, None]:
    """Pass `deltas` through, merging those that are ready before the next one is taken; never waits for more.

    A merged delta has the texts in order and the last delta's finish reason and token counts (they are
    cumulative). At most `max_deltas` go into one, and no more once it holds `max_chars` characters. An error of
    the source is raised after the deltas before it. Closing this stream early cancels the read in progress and
    closes `deltas` (the engine aborts the request).
    """
    ready: asyncio.Queue[GenerationDelta | _End] = asyncio.Queue(maxsize=max_deltas)

    async def pump() -> None:
        try:
            async for delta in deltas:
                await ready.put(delta)
        except Exception as e:
            await ready.put(_End(e))
        else:
            await ready.put(_End())

    pumping = asyncio.create_task(pump())
    try:
        end: _End | None = None
        while end is None:
            item = await ready.get()
            batch: list[GenerationDelta] = []
            chars = 0
            while True:
                if isinstance(item, _End):
                    end = item
                    break
                batch.append(item)
                chars += len(item.text)
                if len(batch) >= max_deltas or chars >= max_chars or ready.empty():
                    break
                item = ready.get_nowait()
            if batch:
                yield batch[0] if len(batch) == 1 else _merged(batch)
        if end.error is not None:
            raise end.error
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        if hasattr(deltas, "aclose"):
            await deltas.aclose()


def _merged(batch: list[GenerationDelta]) -> GenerationDelta:
    last = batch[-1]
    return GenerationDelta(
        text="".join(d.text for d in batch),
        finish_reason=last.finish_reason,
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
    )


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
        deltas = coalesce_deltas(traced_generation(span, self._engine.generate(request)))
        async with contextlib.aclosing(deltas):  # closed at once when the caller cancels, not when collected
            async for delta in deltas:
                yield delta

    def reconfigure(self, user_config: dict[str, str]) -> None:
        """Serve hands over the deployment's `user_config`: the spec digest it was deployed with (nothing to do)."""
        self.spec_version = user_config.get("spec_version")

    async def health(self) -> EngineHealth:
        return await self._engine.health()

    async def check_health(self) -> None:
        """Serve's periodic health probe: a dead engine makes Serve replace the replica."""
        if not (await self._engine.health()).healthy:
            raise EngineUnavailableError(f"engine for {self._model} is unhealthy")

    async def __del__(self) -> None:
        await self._engine.shutdown()
        flush_tracing()
