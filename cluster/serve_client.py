"""`LLMEngine` over a Ray Serve handle: streams deltas out of an `ExpertServer` replica."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from chimera.errors import ChimeraError
from chimera.models.engine.base import (
    EngineError,
    EngineHealth,
    EngineUnavailableError,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
)

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

log = logging.getLogger(__name__)

START_ATTEMPTS = 3  # a request is sent this often at most while no replica has started answering it
START_BACKOFF_S = 0.5  # times the attempt number, between sends


class ServeEngineClient(LLMEngine):
    """Calls one engine deployment; closing the stream early cancels the call, which aborts the request.

    The deployment is started and stopped by `cluster.engines`; `start` and `shutdown` here only mark the client.
    """

    def __init__(self, handle: "DeploymentHandle") -> None:
        self._handle = handle
        self._stream = handle.options(stream=True, method_name="generate")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """The replica's deltas; its typed errors come out as themselves, without Ray's wrapper (whose text
        carries the remote traceback, pids and addresses, which must not reach an API client).

        A request whose replica dies before its first delta (its node was lost, the replica was being replaced)
        is sent again, up to `START_ATTEMPTS` times, and Serve routes it to a live replica; once deltas have gone
        out, a lost replica ends the stream with `EngineUnavailableError`.

        Raises:
            EngineError: the replica's own error (`PromptTooLongError`, …), or a bug there (message only).
            EngineUnavailableError: the replica died mid-stream, or no replica took the request.
        """
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import RayServeException

        for attempt in range(1, START_ATTEMPTS + 1):
            responses = cast("DeploymentResponseGenerator[GenerationDelta]", self._stream.remote(request))
            started = done = False
            try:
                async for delta in responses:
                    started = True
                    yield delta
                done = True
                return
            except RayTaskError as e:
                if isinstance(e.cause, ChimeraError):
                    raise e.cause from None
                log.error("engine replica failed on %s: %s", request.request_id, e)
                raise EngineError(f"the engine replica failed ({type(e.cause).__name__})") from None
            except (RayActorError, RayServeException) as e:
                if started or attempt == START_ATTEMPTS:
                    log.error("engine replica unavailable on %s: %s", request.request_id, e)
                    raise EngineUnavailableError("the engine replica is not running; try again shortly") from None
                log.warning("engine replica lost before %s started (attempt %d); sending it again",
                            request.request_id, attempt)  # fmt: skip
            finally:
                if not done:
                    responses.cancel()
            await asyncio.sleep(START_BACKOFF_S * attempt)  # only reached when nothing was sent: send it again

    async def start(self) -> None:
        """The deployment is running once `serve.run` returned its handle: nothing to do."""

    async def abort(self, request_id: str) -> None:
        """Requests are aborted by closing their stream (Serve cancels the call in the replica); ids are not
        routed to replicas, so this is a no-op."""

    async def health(self) -> EngineHealth:
        """The replica's report.

        Raises:
            EngineUnavailableError: no replica answered (dead, restarting, or the application is gone).
        """
        from ray.exceptions import RayError
        from ray.serve.exceptions import RayServeException

        try:
            return await self._handle.health.remote()
        except (RayError, RayServeException) as e:
            raise EngineUnavailableError(f"the engine deployment did not answer: {e}") from e

    async def shutdown(self) -> None:
        """The deployment outlives its clients; `cluster.engines.stop_engines` deletes it."""
