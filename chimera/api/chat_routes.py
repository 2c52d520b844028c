"""POST /v1/chat/completions: JSON or server-sent events in OpenAI's chunk format."""

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import trace

from chimera.api.deadlines import Deadline
from chimera.api.errors import APIError, to_api_error
from chimera.api.owned_stream import owned
from chimera.api.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    DeltaMessage,
    Extension,
    ResponseMessage,
    Usage,
    error_payload,
)
from chimera.api.requests import parse_chat_request, read_body, to_chat_request
from chimera.chat import ChatDelta, ChatOutcome, ChatService, ChatStream
from chimera.cluster.tracing import trace_id_hex
from chimera.config import ServerConfig
from chimera.identity.limits import Limiter
from chimera.identity.principal import Principal
from chimera.metrics import Metrics

router = APIRouter()
_tracer = trace.get_tracer("chimera.api")
T = TypeVar("T")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    service: ChatService = request.app.state.service
    limits: ServerConfig = request.app.state.limits
    principal: Principal = request.state.principal
    span = _tracer.start_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER)
    span.set_attributes({"chimera.principal": principal.id, "chimera.tenant": principal.tenant})
    parent = trace.set_span_in_context(span)
    model = "unknown"  # until the body is read
    deadline = Deadline.of(request)
    try:
        async with deadline.enforced():
            wire = parse_chat_request(await read_body(request, limits), limits)
            model = wire.model
            span.set_attributes({"chimera.model": wire.model, "chimera.stream": wire.stream})
            chat_request = to_chat_request(wire, limits, principal, request.headers.get("x-session-id"))
            limiter = request.app.state.limiter
            chat = await metered(limiter, principal, lambda: service.start(chat_request, parent=parent))
    except Exception as e:
        raise counted(request, model, failed(span, e)) from e
    return await respond(request, deadline.bound(chat), wire.model, span, stream=wire.stream,
                         include_usage=bool(wire.stream_options and wire.stream_options.include_usage))  # fmt: skip


async def metered(limiter: Limiter, principal: Principal, start: Callable[[], Awaitable[ChatStream]]) -> ChatStream:
    """Start a chat within `principal`'s limits: admitted first (429 when over them), released with the tokens it
    spent when its stream ends or is abandoned, or at once when it fails to start."""
    admission = await limiter.admit(principal)
    try:
        chat = await start()
    except BaseException:
        await limiter.release(admission, 0)
        raise

    async def deltas() -> AsyncIterator[ChatDelta]:
        tokens = 0
        try:
            async for delta in chat:
                if isinstance(delta, ChatOutcome):
                    tokens = delta.prompt_tokens + delta.completion_tokens
                yield delta
        finally:
            await limiter.release(admission, tokens)

    return dataclasses.replace(chat, _deltas=deltas())


def counted(request: Request, model: str, error: APIError) -> APIError:
    """`error`, counted as the outcome of a chat request for `model` that failed before its answer began."""
    request.app.state.metrics.request_done(model, error.status, time.perf_counter() - request.state.started)
    return error


def failed(span: trace.Span, e: Exception) -> APIError:
    """The API error for `e`, recorded on the request's span, which ends here (nothing was sent yet)."""
    error = to_api_error(e)
    span.set_attribute("http.response.status_code", error.status)
    span.set_status(trace.StatusCode.ERROR, error.message)
    span.end()
    return error


async def respond(
    request: Request, chat: ChatStream, model: str, span: trace.Span, *, stream: bool, include_usage: bool
) -> Response:
    """A started chat as an OpenAI chat completion (JSON, or server-sent events), with Chimera's headers.

    A client that leaves stops the generation either way: a stream is closed by the server, a JSON answer is
    abandoned here (which closes the stream to the engine, which aborts the request). Ends `span` when the
    answer has been sent.
    """
    chat = observed(request.app.state.metrics, chat, time.perf_counter() - request.state.started)
    decision = chat.decision
    headers = {
        "x-chimera-expert": decision.expert,
        "x-chimera-route-confidence": f"{decision.confidence:.3f}",
        "x-chimera-route-runner-up": decision.runner_up or "",
        "x-chimera-route-signals": ",".join(decision.signals),
        "x-chimera-route-spilled": "true" if decision.spilled else "false",
        "x-chimera-trace-id": trace_id_hex(span),
        "x-session-id": chat.session_id,
    }
    if chat.guardrail:  # refused by an input rail: HTTP 200, finish_reason content_filter, and which rail
        headers["x-chimera-guardrail"] = chat.guardrail
    # the session on the request's span: the trace list filters by it (GenAI's name, and ours)
    span.set_attributes({"chimera.session": chat.session_id, "gen_ai.conversation.id": chat.session_id})
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if stream:
        body = _sse(chat, model, include_usage, completion_id, span)
        return StreamingResponse(owned(body), media_type="text/event-stream", headers=headers)
    try:
        outcome = await _unless_disconnected(request, _outcome(chat))
    except ClientDisconnected:
        span.set_attribute("chimera.client_disconnected", True)
        return Response(status_code=499)  # nobody reads it; nginx's code for "client closed request"
    except Exception as e:
        error = to_api_error(e)
        span.set_status(trace.StatusCode.ERROR, error.message)
        raise error from e
    finally:
        span.end()
    completion = ChatCompletion(
        id=completion_id,
        model=model,
        choices=[Choice(message=_message(outcome), finish_reason=outcome.finish_reason)],
        usage=_usage(outcome),
        chimera=_extension(outcome, chat.session_id),
    )
    return JSONResponse(completion.model_dump(exclude_none=True), headers=headers)


def observed(metrics: Metrics, chat: ChatStream, elapsed_s: float) -> ChatStream:
    """`chat`, its stream counted in `metrics` as it flows: time to the first answer text (not for a refusal),
    tokens per expert, and the request's outcome and duration (`elapsed_s`: the time it took to start)."""
    started = time.perf_counter() - elapsed_s

    def elapsed() -> float:
        return time.perf_counter() - started

    async def deltas() -> AsyncIterator[ChatDelta]:
        done = False
        timed = chat.guardrail is not None  # TTFT taken (never for a refusal: its text says nothing of the engines)
        try:
            async for delta in chat:
                if isinstance(delta, str) and delta and not timed:
                    timed = True
                    metrics.first_text(chat.model, elapsed())
                elif isinstance(delta, ChatOutcome):  # counted now: a JSON answer stops reading here
                    done = True
                    metrics.used(chat.decision.expert, delta.prompt_tokens, delta.completion_tokens)
                    refused = chat.guardrail or delta.finish_reason == "content_filter"
                    metrics.request_done(chat.model, "refused" if refused else "ok", elapsed())
                yield delta
        except Exception as e:
            if not done:
                done = True
                metrics.request_done(chat.model, to_api_error(e).status, elapsed())
            raise
        finally:
            if not done:  # closed before its outcome: the client left
                metrics.request_done(chat.model, "disconnected", elapsed())

    return dataclasses.replace(chat, _deltas=deltas())


class ClientDisconnected(Exception):
    """The client closed the connection before its JSON answer was ready."""


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; cancelled (and `ClientDisconnected` raised) as soon as the client goes away."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():  # the client left (or the server is stopping): stop generating
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


async def _disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the only message left is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _outcome(chat: ChatStream) -> ChatOutcome:
    """The chat's final outcome (the text it streamed is in it)."""
    async for delta in chat:
        if isinstance(delta, ChatOutcome):
            return delta
    raise RuntimeError("the chat stream ended without its outcome")


def _message(outcome: ChatOutcome) -> ResponseMessage:
    if outcome.tool_calls:
        return ResponseMessage(content=outcome.text or None, tool_calls=[c.as_dict() for c in outcome.tool_calls])
    return ResponseMessage(content=outcome.text)


def _extension(outcome: ChatOutcome, session_id: str) -> Extension | None:
    run = outcome.run
    paused = (
        {"status": "paused", "next": list(run.next), "pending": [p.as_dict() for p in run.pending],
         "resume": f"/v1/sessions/{session_id}/resume"}
        if outcome.paused
        else None
    )  # fmt: skip
    if not outcome.citations and outcome.stop_reason is None and paused is None:
        return None
    return Extension(citations=[c.as_dict() for c in outcome.citations], stop_reason=outcome.stop_reason, run=paused)


def _usage(outcome: ChatOutcome) -> Usage:
    return Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                 total_tokens=outcome.prompt_tokens + outcome.completion_tokens)  # fmt: skip


async def _sse(
    chat: ChatStream, model: str, include_usage: bool, completion_id: str, span: trace.Span
) -> AsyncGenerator[str, None]:
    """OpenAI's stream: a role chunk, content chunks, exactly one finish chunk, an optional usage chunk, [DONE].

    An error after the headers went out arrives as `data: {"error": …}`, then [DONE].
    """
    created = int(time.time())

    def chunk(delta: DeltaMessage, finish: str | None = None, extension: Extension | None = None) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        c = ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice], chimera=extension)
        return f"data: {c.model_dump_json(exclude_none=True)}\n\n"

    try:
        yield chunk(DeltaMessage(role="assistant", content=""))
        async for delta in chat:
            if isinstance(delta, str):
                yield chunk(DeltaMessage(content=delta))
            elif isinstance(delta, ChatOutcome):
                for i, call in enumerate(delta.tool_calls):  # OpenAI's deltas: id and name, then the arguments
                    opened = {"index": i, "id": call.id, "type": "function",
                              "function": {"name": call.name, "arguments": ""}}  # fmt: skip
                    yield chunk(DeltaMessage(tool_calls=[opened]))
                    yield chunk(DeltaMessage(tool_calls=[{"index": i, "function": {"arguments": call.arguments}}]))
                yield chunk(DeltaMessage(), delta.finish_reason, _extension(delta, chat.session_id))
                if include_usage:
                    usage = ChatCompletionChunk(
                        id=completion_id, created=created, model=model, choices=[], usage=_usage(delta)
                    )
                    yield f"data: {usage.model_dump_json()}\n\n"
            else:  # the agent's progress: an empty delta with the event in the `chimera` extension
                yield chunk(DeltaMessage(), extension=Extension(event=delta.as_dict()))
    except Exception as e:  # headers are gone: report in-band, keep the connection's framing intact
        error = to_api_error(e)
        span.set_status(trace.StatusCode.ERROR, error.message)
        yield f"data: {json.dumps(error_payload(error.message, error.type, code=error.code))}\n\n"
    except (asyncio.CancelledError, GeneratorExit):  # the client left: the run under it is being stopped
        span.set_attribute("chimera.client_disconnected", True)
        raise
    finally:
        span.end()
    yield "data: [DONE]\n\n"
