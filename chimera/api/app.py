"""The FastAPI application: routes, auth, error mapping. Built around an already started `ChatService`."""

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from chimera.agents.runs import GRAPHS
from chimera.api.chat_routes import router as chat_router
from chimera.api.errors import APIError, install_error_handlers, json_error
from chimera.api.protocol import ModelCard, ModelList
from chimera.api.session_routes import router as session_router
from chimera.chat import AGENT_MODEL, AUTO_MODEL, EXPERT_PREFIX, ChatService, served_models
from chimera.config import ServerConfig

if TYPE_CHECKING:
    from chimera.service import Service

meta_router = APIRouter()


@meta_router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    service: ChatService = request.app.state.service
    descriptions = {
        AGENT_MODEL: "Chimera agent: router, then a ReAct loop with tools on the chosen expert.",
        **{kind.model: kind.description for kind in GRAPHS.values()},
        AUTO_MODEL: "Router picks one expert; no tools.",
        **{EXPERT_PREFIX + name: e.spec.description or f"The {name} expert." for name, e in service.experts.items()},
    }
    return ModelList(data=[ModelCard(id=m, description=descriptions.get(m, "")) for m in served_models()])


@meta_router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness and engine load; 503 when an engine is down."""
    report = await request.app.state.health()
    status = 200 if report.get("status") == "ok" else 503
    return JSONResponse(report, status_code=status)


def create_app(service: "Service", limits: ServerConfig) -> FastAPI:
    """The HTTP shell around a built `Service`: its chat service behind the routes, its health at /healthz, its
    event-loop parts started and closed with the app."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.astart()
        yield
        await service.aclose()

    app = FastAPI(title="Chimera", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service.chat
    app.state.limits = limits
    app.state.health = service.health
    install_error_handlers(app)
    app.include_router(chat_router)
    app.include_router(session_router)
    app.include_router(meta_router)

    if limits.api_keys:
        keys = [k.encode() for k in limits.api_keys]

        @app.middleware("http")
        async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if request.url.path != "/healthz":
                token = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
                if not any(hmac.compare_digest(token, k) for k in keys):
                    return json_error(APIError(401, "invalid or missing API key", "authentication_error",
                                               code="invalid_api_key"))  # fmt: skip
            return await call_next(request)

    return app
