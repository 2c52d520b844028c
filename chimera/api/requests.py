"""Reading a chat request off the wire: size limits, strict UTF-8, JSON, schema, prompt limits."""

import json

from fastapi import Request
from pydantic import ValidationError

from chimera.api.errors import APIError
from chimera.api.protocol import ChatCompletionRequest
from chimera.chat import ChatRequest
from chimera.config import ServerConfig
from chimera.messages import ChatMessage
from chimera.models.expert import SamplingOverrides


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes without buffering past it (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")
    return bytes(body)


def parse_chat_request(body: bytes, limits: ServerConfig) -> ChatCompletionRequest:
    """Decode and validate; every failure is a 400 (413 for an oversized prompt) with the offending field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"request body is not valid UTF-8 (byte {e.start})", code="invalid_encoding") from e
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from e  # fmt: skip
    if not isinstance(raw, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    try:
        request = ChatCompletionRequest.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from e
    if len(request.messages) > limits.max_messages:
        raise APIError(400, f"at most {limits.max_messages} messages per request", param="messages")
    return request


def to_chat_request(request: ChatCompletionRequest, limits: ServerConfig, session_id: str | None) -> ChatRequest:
    """Wire request → service request: plain-text messages, sampling overrides, prompt-size check."""
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
    sampling = SamplingOverrides(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_tuple(),
        seed=request.seed,
        ignore_eos=request.ignore_eos,
    )
    interrupts = tuple(request.interrupt_before) if request.interrupt_before is not None else None
    return ChatRequest(
        model=request.model, messages=messages, sampling=sampling, session_id=session_id, interrupt_before=interrupts
    )
