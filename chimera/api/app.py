"""The FastAPI application: routes, auth, error mapping. Built around an already started `ChatService`."""

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from chimera.api.chat_routes import router as chat_router
from chimera.api.errors import APIError, install_error_handlers, json_error
from chimera.api.protocol import ModelCard, ModelList
from chimera.api.session_routes import router as session_router
from chimera.chat import AGENT_MODEL, AUTO_MODEL, EXPERT_PREFIX, REACT_MODEL, TEAM_MODEL, ChatService, served_models
from chimera.config import ServerConfig

HealthProbe = Callable[[], Awaitable[dict[str, object]]]

meta_router = APIRouter()


@meta_router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    service: ChatService = request.app.state.service
    descriptions = {
        AGENT_MODEL: "Chimera agent: router, then a ReAct loop with tools on the chosen expert.",
        REACT_MODEL: "The ReAct agent (same as `chimera`).",
        TEAM_MODEL: "Supervisor team: plans sub-tasks for math, code and research agents, runs them in parallel, "
        "synthesizes the answer.",
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


def create_app(
    service: ChatService,
    limits: ServerConfig,
    health: HealthProbe,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The HTTP shell around `service`; `health` reports the engines for /healthz."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = FastAPI(title="Chimera", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service
    app.state.limits = limits
    app.state.health = health
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
