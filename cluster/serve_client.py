"""`EngineClient` over a Ray Serve handle: streams deltas out of an `ExpertServer` replica."""

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from chimera.models.engine.base import EngineHealth, GenerationDelta, GenerationRequest

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator


class ServeEngineClient:
    """Calls one engine deployment; closing the stream early cancels the call, which aborts the request."""

    def __init__(self, handle: "DeploymentHandle") -> None:
        self._handle = handle
        self._stream = handle.options(stream=True, method_name="generate")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        responses = cast("DeploymentResponseGenerator[GenerationDelta]", self._stream.remote(request))
        done = False
        try:
            async for delta in responses:
                yield delta
            done = True
        finally:
            if not done:
                responses.cancel()

    async def health(self) -> EngineHealth:
        return await self._handle.health.remote()
