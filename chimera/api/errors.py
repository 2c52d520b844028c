"""Every error the API returns, mapped to a status code in one place, in OpenAI's error shape."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chimera.agents.runs import InvalidInterruptError, NothingToResumeError
from chimera.api.deadlines import DeadlineExceededError
from chimera.api.protocol import error_payload
from chimera.chat import OverloadedError, UnknownModelError
from chimera.documents import DocumentNotFoundError, DocumentPermissionError, IndexBusyError
from chimera.embeddings import EmbeddingInputError
from chimera.errors import ChimeraError
from chimera.function_calls import UnsupportedToolSchemaError
from chimera.identity.keys import AuthenticationError, KeyStoreError
from chimera.identity.limits import LimitError, RateLimitedError
from chimera.memory.checkpoint.base import CheckpointError
from chimera.memory.long_context.base import LongMemoryError
from chimera.memory.sessions.base import (
    InvalidSessionIdError,
    SessionError,
    SessionNotFoundError,
    UnknownCursorError,
)
from chimera.models.engine.base import EngineError, EngineUnavailableError, PromptTooLongError, UnsupportedSchemaError
from chimera.spans.otlp import OtlpDecodeError
from chimera.spans.store import InvalidSpanError, InvalidTraceQueryError, SpanStoreError, TraceNotFoundError
from chimera.tasks.model import (
    InvalidCursorError,
    InvalidTaskError,
    TaskConflictError,
    TaskExpiredError,
    TaskInputTooLargeError,
    TaskNotFoundError,
    TaskPermissionError,
)
from chimera.tasks.queue import QueueUnavailableError

log = logging.getLogger(__name__)


class APIError(ChimeraError):
    """An error with its HTTP status, raised by handlers for bad requests."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.retry_after_s = retry_after_s  # sent as Retry-After (429, 503)


def to_api_error(e: Exception) -> APIError:
    """The HTTP face of one of our errors (also used for errors in the middle of a stream)."""
    match e:
        case APIError():
            return e
        case UnknownModelError():
            return APIError(404, str(e), param="model", code="model_not_found")
        case PromptTooLongError():
            return APIError(400, str(e), param="messages", code="context_length_exceeded")
        case UnsupportedSchemaError():
            return APIError(400, str(e), param="response_format.json_schema.schema", code="invalid_json_schema")
        case DocumentNotFoundError():
            return APIError(404, str(e), code="document_not_found")
        case DocumentPermissionError():
            return APIError(403, str(e), "permission_error", param=e.param, code="permission_denied")
        case IndexBusyError():
            return APIError(503, str(e), "service_unavailable", code="unavailable", retry_after_s=5)
        case UnsupportedToolSchemaError():
            return APIError(400, str(e), param="tools", code="invalid_json_schema")
        case EmbeddingInputError():
            return APIError(400, str(e), param=e.param, code="invalid_value")
        case InvalidInterruptError():
            return APIError(400, str(e), param="interrupt_before", code="invalid_value")
        case TaskInputTooLargeError():
            return APIError(413, str(e), param=e.param, code=e.code)
        case InvalidTaskError():
            return APIError(400, str(e), param=e.param, code=e.code)
        case InvalidCursorError():
            return APIError(400, str(e), param="after", code="invalid_cursor")
        case TaskPermissionError():
            return APIError(403, str(e), "permission_error", code="permission_denied")
        case TaskNotFoundError():
            return APIError(404, str(e), code="task_not_found")
        case TaskExpiredError():
            return APIError(410, str(e), code="task_expired")
        case TaskConflictError():
            return APIError(409, str(e), code=e.code)
        case TraceNotFoundError():
            return APIError(404, str(e), code="trace_not_found")
        case InvalidTraceQueryError():
            return APIError(400, str(e), param=e.param, code="invalid_value")
        case OtlpDecodeError() | InvalidSpanError():
            return APIError(400, str(e), code="invalid_otlp")
        case SpanStoreError():
            return APIError(503, str(e), "service_unavailable", code="unavailable", retry_after_s=1)
        case QueueUnavailableError():
            return APIError(503, str(e), "service_unavailable", code="unavailable", retry_after_s=1)
        case NothingToResumeError():
            return APIError(409, str(e), code="nothing_to_resume")
        case UnknownCursorError():
            return APIError(400, str(e), param="after", code="invalid_cursor")
        case InvalidSessionIdError():
            return APIError(400, str(e), param="x-session-id", code="invalid_session_id")
        case SessionNotFoundError():
            return APIError(404, str(e), code="session_not_found")
        case AuthenticationError():
            return APIError(401, str(e), "authentication_error", code="invalid_api_key")
        case RateLimitedError():
            return APIError(429, str(e), "rate_limit_error", code=e.limit, retry_after_s=e.retry_after_s)
        case KeyStoreError() | LimitError():
            return APIError(503, str(e), "service_unavailable", code="unavailable", retry_after_s=1)
        case DeadlineExceededError():
            return APIError(504, str(e), "timeout_error", code="deadline_exceeded")
        case OverloadedError():
            return APIError(503, str(e), "service_unavailable", code="overloaded", retry_after_s=1)
        case EngineUnavailableError() | SessionError() | LongMemoryError() | CheckpointError():
            return APIError(503, str(e), "service_unavailable", code="unavailable", retry_after_s=5)
        case EngineError():
            return APIError(500, str(e), "engine_error")
    log.exception("unhandled error", exc_info=e)
    return APIError(500, "internal server error", "internal_error")


def json_error(e: APIError) -> JSONResponse:
    headers = {"retry-after": str(e.retry_after_s)} if e.retry_after_s is not None else None
    payload = error_payload(e.message, e.type, param=e.param, code=e.code)
    return JSONResponse(payload, status_code=e.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(_: Request, e: APIError) -> JSONResponse:
        return json_error(e)

    @app.exception_handler(ChimeraError)
    async def _ours(_: Request, e: ChimeraError) -> JSONResponse:
        return json_error(to_api_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return json_error(APIError(e.status_code, str(e.detail), code=code))

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception) -> JSONResponse:
        return json_error(to_api_error(e))
