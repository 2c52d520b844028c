"""The service under test behind HTTP, without Ray or vLLM: in-process through httpx's ASGI transport (fast, no
sockets), or behind real uvicorn in a thread, set up as `chimera serve` sets it up (sockets that close, fuzzers
that speak HTTP, the connection limits)."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from chimera.api.app import create_app
from chimera.api.uvicorn_server import uvicorn_config
from chimera.config import ChimeraConfig, load_config
from chimera.guardrails.base import Rails
from chimera.models.engine.base import LLMEngine
from chimera.models.router.base import Router
from chimera.models.router.heuristic import HeuristicRouter
from chimera.service import Service, build_service

LOCAL_CONFIG = Path(__file__).parents[2] / "configs" / "local.yaml"


def local_config(data_dir: Path, **sections: dict[str, Any]) -> ChimeraConfig:
    """`configs/local.yaml` with its data dir at `data_dir` and the given top-level sections merged into its own
    (written to `data_dir/config.yaml` and loaded, as `chimera --config` would)."""
    raw = yaml.safe_load(LOCAL_CONFIG.read_text())
    raw["data_dir"] = str(data_dir)
    for name, values in sections.items():
        raw[name] = {**(raw.get(name) or {}), **values}
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@asynccontextmanager
async def in_process(
    config: ChimeraConfig, engine: LLMEngine, redis_url: str, rails: Rails, router: Router | None = None
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The started service on `engine` (every engine name of `config`; the config's router unless given) and a
    client of its app."""
    engines = {name: engine for name in config.engines}
    service = build_service(config, engines, redis_url=redis_url, rails=rails, router=router)
    await service.astart()
    try:
        transport = httpx.ASGITransport(app=create_app(service, config.server))
        async with httpx.AsyncClient(transport=transport, base_url="http://chimera", timeout=30) as http:
            yield service, http
    finally:
        await service.aclose()


class _ServerThread(threading.Thread):
    """The app under uvicorn, with its service built in the server's own event loop."""

    def __init__(
        self, config: ChimeraConfig, engine: LLMEngine, redis_url: str, rails: Rails, router: Router | None
    ) -> None:
        super().__init__(daemon=True)
        self.config, self.engine, self.redis_url, self.rails = config, engine, redis_url, rails
        self.router = router or HeuristicRouter()
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
                                router=self.router)  # fmt: skip
        app = create_app(service, self.config.server)
        self.server = uvicorn.Server(uvicorn_config(app, self.config.server, host="127.0.0.1", port=0))
        serving = asyncio.create_task(self.server.serve())
        while not self.server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no "started" event)
            await asyncio.sleep(0.05)
        self.ready.set()
        await serving


@contextmanager
def served(
    config: ChimeraConfig, engine: LLMEngine, redis_url: str, rails: Rails, router: Router | None = None
) -> Iterator[str]:
    """The base URL of the service on `engine` (every engine name of `config`; the heuristic router unless given),
    until the block ends."""
    thread = _ServerThread(config, engine, redis_url, rails, router)
    thread.start()
    assert thread.ready.wait(120) and thread.server is not None and thread.server.started, "the server did not start"
    port = thread.server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.server.should_exit = True
        thread.join(30)
