"""The FastAPI application: routes, auth, error mapping. Built around an already started `ChatService`."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from chimera.agents.runs import GRAPHS
from chimera.api.chat_routes import router as chat_router
from chimera.api.document_routes import router as document_router
from chimera.api.embedding_routes import router as embedding_router
from chimera.api.errors import install_error_handlers, json_error, to_api_error
from chimera.api.mcp_routes import mcp_app
from chimera.api.metrics_routes import router as metrics_router
from chimera.api.protocol import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    ResumeRequest,
    TaskCreateRequest,
    TaskResumeRequest,
)
from chimera.api.session_list_routes import router as session_list_router
from chimera.api.session_routes import router as session_router
from chimera.api.task_routes import router as task_router
from chimera.api.trace_routes import router as trace_router
from chimera.api.ui_routes import UI_PATHS
from chimera.api.ui_routes import router as ui_router
from chimera.chat import AGENT_MODEL, AUTO_MODEL, EXPERT_PREFIX, ChatService, UnknownModelError, served_models
from chimera.config import ServerConfig
from chimera.embeddings import EmbeddingService
from chimera.errors import ChimeraError
from chimera.identity.audit import audit
from chimera.identity.keys import Authenticator

if TYPE_CHECKING:
    from chimera.service import Service

meta_router = APIRouter()
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", *UI_PATHS})  # answered without an API key (the viewer's
# page and files are static: it asks for the key, and sends it on its own calls to the API)
ERROR_STATUSES = {  # what any route may answer besides its success (`chimera.api.errors.to_api_error`)
    "400": "Invalid request (the message and `param` say what).",
    "401": "Missing or invalid API key.",
    "404": "Unknown model, route, session, document or trace (another key's session, another tenant's document or "
    "trace are unknown too).",
    "405": "Method not allowed.",
    "408": "The request body stopped arriving.",
    "403": "The key's role may not do this (ingestion and evaluation tasks need an admin key).",
    "409": "Nothing to resume, a task state that does not allow it, or an idempotency key reused.",
    "410": "The task's result expired (tasks.result_ttl_s).",
    "413": "Request body or prompt too large.",
    "429": "Over one of the key's limits; see Retry-After.",
    "503": "An engine, Redis or the key store is unavailable; see Retry-After.",
    "504": "The request ran past its deadline (server.request_timeout_s) and was stopped.",
}
REQUEST_BODIES: dict[tuple[str, str], tuple[type[BaseModel], bool]] = {  # (method, path): (body, required)
    ("post", "/v1/chat/completions"): (ChatCompletionRequest, True),
    ("post", "/v1/embeddings"): (EmbeddingRequest, True),
    ("post", "/v1/sessions/{session_id}/resume"): (ResumeRequest, False),
    ("post", "/v1/tasks"): (TaskCreateRequest, True),
    ("post", "/v1/tasks/{task_id}/resume"): (TaskResumeRequest, False),
}


@meta_router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    """The chat models (agents, `auto`, the experts), then the embedding model."""
    return ModelList(data=_model_cards(request))


@meta_router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    """One model of the list; 404 `model_not_found` for any other id."""
    cards = _model_cards(request)
    card = next((c for c in cards if c.id == model_id), None)
    if card is None:
        raise UnknownModelError(f"The model `{model_id}` does not exist. Available: {', '.join(c.id for c in cards)}")
    return card


def _model_cards(request: Request) -> list[ModelCard]:
    service: ChatService = request.app.state.service
    embeddings: EmbeddingService = request.app.state.embeddings
    descriptions = {
        AGENT_MODEL: "Chimera agent: router, then a ReAct loop with tools on the chosen expert.",
        **{kind.model: kind.description for kind in GRAPHS.values()},
        AUTO_MODEL: "Router picks one expert; no tools.",
        **{EXPERT_PREFIX + name: e.spec.description or f"The {name} expert." for name, e in service.experts.items()},
    }
    chat = [ModelCard(id=m, description=descriptions.get(m, "")) for m in served_models()]
    about = f"Embeddings (POST /v1/embeddings): the document search's embedder, {embeddings.max_tokens} word pieces."
    embedding = ModelCard(id=embeddings.model, description=about)
    return [*chat, embedding]


@meta_router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness and engine load; 503 when an engine is down."""
    report = await request.app.state.health()
    status = 200 if report.get("status") == "ok" else 503
    return JSONResponse(report, status_code=status)


def create_app(service: "Service", limits: ServerConfig) -> FastAPI:
    """The HTTP shell around a built `Service`: its chat service behind the routes, its health at /healthz, its
    event-loop parts started and closed with the app."""

    mcp, mcp_server = mcp_app(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.astart()
        async with mcp_server.session_manager.run():
            yield
        await service.aclose()

    app = FastAPI(title="Chimera", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service.chat
    app.state.limits = limits
    app.state.health = service.health
    app.state.tasks = service.tasks
    app.state.spans = service.spans
    app.state.metrics = service.metrics
    app.state.engine_reports = service.engine_reports
    app.state.embeddings = service.embeddings
    app.state.sessions = service.sessions
    app.state.documents = service.documents
    install_error_handlers(app)
    app.include_router(chat_router)
    app.include_router(session_router)
    app.include_router(session_list_router)
    app.include_router(document_router)
    app.include_router(embedding_router)
    app.include_router(task_router)
    app.include_router(trace_router)
    app.include_router(meta_router)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    app.router.routes.extend(mcp.routes)  # POST /mcp: the MCP server, behind the same auth

    authenticator = service.authenticator
    app.state.limiter = service.limiter

    @app.middleware("http")
    async def _authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Every route but the public ones acts as the principal of the request's API key (401 without a valid
        one); the arrival time is kept for the request metrics."""
        request.state.started = time.perf_counter()
        if request.url.path not in PUBLIC_PATHS:
            try:
                request.state.principal = await authenticator.authenticate(request.headers.get("authorization"))
            except ChimeraError as e:
                error = to_api_error(e)
                if error.status == 401:
                    audit("auth_refused", None, reason=error.message, path=request.url.path)
                return json_error(error)
        return await call_next(request)

    app.openapi = lambda: _openapi(app, auth=Authenticator.required(limits))  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, *, auth: bool) -> dict[str, Any]:
    """FastAPI's document, plus the request bodies the handlers read themselves (so that their size limit and
    error shapes apply), and the bearer scheme when keys are required."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (method, path), (model, required) in REQUEST_BODIES.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        schema["paths"][path][method]["requestBody"] = {"required": required, "content": content}
    components["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(components["ErrorResponse"].pop("$defs", {}))
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for status in ERROR_STATUSES if path != "/healthz" else ("503",):
                operation["responses"].setdefault(status, {"description": ERROR_STATUSES[status], **error})
    if auth:
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            if path not in PUBLIC_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
