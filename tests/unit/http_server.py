"""A built service behind real uvicorn in a thread of the test process, for tests that need real HTTP (sockets
that close, fuzzers that speak HTTP) but no Ray or vLLM."""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from chimera.api.app import create_app
from chimera.config import ChimeraConfig
from chimera.guardrails.base import Rails
from chimera.models.engine.base import LLMEngine
from chimera.models.router.heuristic import HeuristicRouter
from chimera.service import build_service


class _ServerThread(threading.Thread):
    """The app under uvicorn, with its service built in the server's own event loop."""

    def __init__(self, config: ChimeraConfig, engine: LLMEngine, redis_url: str, rails: Rails) -> None:
        super().__init__(daemon=True)
        self.config, self.engine, self.redis_url, self.rails = config, engine, redis_url, rails
        self.server: uvicorn.Server | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self.ready.set()  # also when it failed to start: the caller then says so at once

    async def _serve(self) -> None:
        engines = {name: self.engine for name in self.config.engines}
        service = build_service(self.config, engines, redis_url=self.redis_url, rails=self.rails,
                                router=HeuristicRouter())  # fmt: skip
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(service, self.config.server), host="127.0.0.1", port=0, log_level="warning")
        )
        serving = asyncio.create_task(self.server.serve())
        while not self.server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no "started" event)
            await asyncio.sleep(0.05)
        self.ready.set()
        await serving


@contextmanager
def served(config: ChimeraConfig, engine: LLMEngine, redis_url: str, rails: Rails) -> Iterator[str]:
    """The base URL of the service on `engine` (every engine name of `config`), until the block ends."""
    thread = _ServerThread(config, engine, redis_url, rails)
    thread.start()
    assert thread.ready.wait(120) and thread.server is not None and thread.server.started, "the server did not start"
    port = thread.server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.server.should_exit = True
        thread.join(30)
