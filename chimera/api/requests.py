"""Reading a chat request off the wire: size limits, strict UTF-8, JSON, schema, prompt limits."""

import asyncio
import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from chimera.api.errors import APIError
from chimera.api.protocol import ChatCompletionRequest
from chimera.chat import ChatRequest
from chimera.config import ServerConfig
from chimera.identity.principal import Principal
from chimera.messages import ChatMessage
from chimera.models.expert import SamplingOverrides

W = TypeVar("W", bound=BaseModel)


async def read_body(request: Request, limits: ServerConfig) -> bytes:
    """The body, refusing more than `max_body_bytes` without buffering past it (413), and a client that sends
    nothing for `body_timeout_s` (408)."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")
    body = bytearray()
    chunks = aiter(request.stream())
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), limits.body_timeout_s)
        except StopAsyncIteration:
            return bytes(body)
        except TimeoutError as e:
            raise APIError(408, f"no request body data for {limits.body_timeout_s:g} s", code="request_timeout") from e
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")


def decode_body(body: bytes, model: type[W]) -> W:
    """Strict UTF-8 → JSON object → `model`; every failure is a 400 naming what is wrong (and the field)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"request body is not valid UTF-8 (byte {e.start})", code="invalid_encoding") from e
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from e  # fmt: skip
    except RecursionError as e:
        raise APIError(400, "request body is nested too deeply", code="invalid_json") from e
    if not isinstance(raw, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    try:  # a \ud800 escape decodes to a lone surrogate, which no model, tokenizer or log can take
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(400, "request body contains a lone UTF-16 surrogate (\\ud800-\\udfff)",
                       code="invalid_encoding") from e  # fmt: skip
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from e


def parse_chat_request(body: bytes, limits: ServerConfig) -> ChatCompletionRequest:
    """Decode and validate; every failure is a 400 (413 for an oversized prompt) with the offending field."""
    request = decode_body(body, ChatCompletionRequest)
    if len(request.messages) > limits.max_messages:
        raise APIError(400, f"at most {limits.max_messages} messages per request", param="messages")
    return request


def to_chat_request(
    request: ChatCompletionRequest, limits: ServerConfig, principal: Principal, session_id: str | None
) -> ChatRequest:
    """Wire request → service request: plain-text messages, sampling overrides, prompt-size and `max_tokens`
    checks (the latter against the principal's limit)."""
    messages: list[ChatMessage] = []
    for i, m in enumerate(request.messages):
        try:
            content = m.text()
        except ValueError as e:
            raise APIError(400, f"messages.{i}.content: {e}", param=f"messages.{i}.content") from e
        role = "system" if m.role == "developer" else m.role
        messages.append(ChatMessage(role=role, content=content))
    if not any(m.role == "user" for m in messages):
        raise APIError(400, "messages must contain at least one user message", param="messages")
    chars = sum(len(m.content) for m in messages)
    if chars > limits.max_prompt_chars:
        raise APIError(413, f"prompt has {chars} characters; the limit is {limits.max_prompt_chars}",
                       param="messages", code="prompt_too_large")  # fmt: skip
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None and max_tokens > principal.limits.max_tokens:
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise APIError(400, f"{param} is {max_tokens}; this key may ask for at most {principal.limits.max_tokens}",
                       param=param, code="max_tokens_exceeded")  # fmt: skip
    sampling = SamplingOverrides(
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_tuple(),
        seed=request.seed,
        ignore_eos=request.ignore_eos,
    )
    interrupts = tuple(request.interrupt_before) if request.interrupt_before is not None else None
    return ChatRequest(request.model, messages, sampling, session_id, interrupts, principal)
