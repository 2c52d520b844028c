"""Reading a chat request off the wire: size limits, strict UTF-8, JSON, schema, prompt limits."""

import asyncio
import json
from typing import Any, TypeVar

import jsonschema
from fastapi import Request
from pydantic import BaseModel, ValidationError

from chimera.api.errors import APIError
from chimera.api.protocol import ChatCompletionRequest, JsonSchemaSpec, NamedToolChoice, ResponseFormat
from chimera.chat import AGENT_GRAPHS, ChatRequest
from chimera.config import ServerConfig
from chimera.function_calls import FunctionCall, FunctionTool, ToolOffer, calls_text, result_text
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


def refuse_unknown_fields(request: W) -> W:
    """`request` if it has no field its model does not declare; else a 400 naming the first (as OpenAI does: a
    parameter that would be ignored is refused, never silently dropped)."""
    unknown = next(iter(request.model_extra or {}), None)
    if unknown is not None:
        raise APIError(400, f"unrecognized request argument: {unknown}", param=unknown, code="unrecognized_parameter")
    return request


def parse_chat_request(body: bytes, limits: ServerConfig) -> ChatCompletionRequest:
    """Decode and validate; every failure is a 400 (413 for an oversized prompt) with the offending field, and so
    is every parameter that would not be honoured."""
    request = refuse_unknown_fields(decode_body(body, ChatCompletionRequest))
    if len(request.messages) > limits.max_messages:
        raise APIError(400, f"at most {limits.max_messages} messages per request", param="messages")
    _refuse_unsupported(request)
    return request


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    """400 `unsupported_parameter` for what is not implemented yet (log probabilities), 400 `invalid_value` for
    combinations OpenAI refuses too."""
    if request.logprobs:
        raise APIError(400, "logprobs: log probabilities are not supported yet", param="logprobs",
                       code="unsupported_parameter")  # fmt: skip
    if request.top_logprobs is not None:
        raise APIError(400, "top_logprobs: log probabilities are not supported yet", param="top_logprobs",
                       code="unsupported_parameter")  # fmt: skip
    if request.stream_options is not None and not request.stream:
        raise APIError(400, "stream_options is only allowed when stream is true", param="stream_options",
                       code="invalid_value")  # fmt: skip


def tool_offer(request: ChatCompletionRequest) -> ToolOffer | None:
    """The client's tools and how the model may use them (None: no tools, or `tool_choice` "none"); a 400 for
    invalid parameter schemas, repeated names, or a choice that names no offered tool."""
    choice, tools = request.tool_choice, request.tools or []
    if not tools:
        if choice not in (None, "none"):
            raise APIError(400, "tool_choice needs tools", param="tool_choice", code="invalid_value")
        if request.parallel_tool_calls is not None:
            raise APIError(400, "parallel_tool_calls needs tools", param="parallel_tool_calls", code="invalid_value")
        return None
    offered: dict[str, FunctionTool] = {}
    for i, tool in enumerate(tools):
        f = tool.function
        if f.name in offered:
            raise APIError(400, f"tools.{i}.function.name: {f.name} is offered twice", param=f"tools.{i}.function.name",
                           code="invalid_value")  # fmt: skip
        if f.parameters is not None:
            checked_schema(f.parameters, f"tools.{i}.function.parameters")
        offered[f.name] = FunctionTool(f.name, f.description or "", f.parameters)
    if choice == "none":
        return None
    parallel = request.parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        named = offered.get(choice.function.name)
        if named is None:
            raise APIError(400, f"tool_choice names {choice.function.name}, which is not among the tools",
                           param="tool_choice", code="invalid_value")  # fmt: skip
        return ToolOffer((named,), "named", parallel=False)
    return ToolOffer(tuple(offered.values()), "required" if choice == "required" else "auto", parallel=parallel)


def conversation(request: ChatCompletionRequest, *, in_session: bool) -> list[ChatMessage]:
    """The messages as plain text: an assistant's tool calls in the JSON the model decides in, a tool's reply as
    a result of the call it names. Outside a session every `tool_call_id` must answer an earlier call of the
    request (in one, the call may be in the stored history)."""
    calls: dict[str, str] = {}  # call id → function name
    messages: list[ChatMessage] = []
    for i, m in enumerate(request.messages):
        try:
            content = m.text()
        except ValueError as e:
            raise APIError(400, f"messages.{i}.content: {e}", param=f"messages.{i}.content") from e
        if m.tool_calls and m.role != "assistant":
            raise APIError(400, f"messages.{i}: only assistant messages carry tool_calls",
                           param=f"messages.{i}.tool_calls", code="invalid_value")  # fmt: skip
        if m.tool_calls:
            made = []
            for j, call in enumerate(m.tool_calls):
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError as e:
                    raise APIError(400, f"messages.{i}.tool_calls.{j}.function.arguments is not JSON: {e.msg}",
                                   param=f"messages.{i}.tool_calls.{j}.function.arguments",
                                   code="invalid_value") from e  # fmt: skip
                made.append(FunctionCall(call.id, call.function.name, json.dumps(arguments, ensure_ascii=False)))
                calls[call.id] = call.function.name
            content = "\n".join(p for p in (content, calls_text(made)) if p)
        if m.role == "tool":
            if not m.tool_call_id:
                raise APIError(400, f"messages.{i}: a tool message needs the tool_call_id of the call it answers",
                               param=f"messages.{i}.tool_call_id", code="invalid_value")  # fmt: skip
            if m.tool_call_id not in calls and not in_session:
                raise APIError(400, f"messages.{i}.tool_call_id: {m.tool_call_id} answers no earlier tool call",
                               param=f"messages.{i}.tool_call_id", code="invalid_value")  # fmt: skip
            content = result_text(calls.get(m.tool_call_id), content)
        role = "system" if m.role == "developer" else m.role
        messages.append(ChatMessage(role=role, content=content))
    return messages


def response_schema(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """The JSON schema `response_format` holds the answer to (None: free text); an invalid schema is a 400."""
    match request.response_format:
        case ResponseFormat(type="json_object"):
            return {"type": "object"}
        case ResponseFormat(type="json_schema", json_schema=JsonSchemaSpec() as spec):
            return checked_schema(spec.schema_, "response_format.json_schema.schema")
    return None


def checked_schema(schema: dict[str, Any], param: str) -> dict[str, Any]:
    """`schema` if it is valid against its metaschema (`$schema`'s, draft 2020-12 by default); else a 400 naming
    `param`."""
    declared = schema.get("$schema")
    if declared is not None and not isinstance(declared, str):
        raise APIError(400, f"{param}: $schema must be a metaschema's URI", param=param, code="invalid_json_schema")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "".join(f"[{p!r}]" for p in e.path)
        raise APIError(400, f"{param}{where} is not a valid JSON schema: {e.message}", param=param,
                       code="invalid_json_schema") from e  # fmt: skip
    except RecursionError as e:
        raise APIError(400, f"{param} is nested too deeply", param=param, code="invalid_json_schema") from e
    return schema


def to_chat_request(
    request: ChatCompletionRequest, limits: ServerConfig, principal: Principal, session_id: str | None
) -> ChatRequest:
    """Wire request → service request: plain-text messages, sampling overrides, prompt-size and `max_tokens`
    checks (the latter against the principal's limit)."""
    messages = conversation(request, in_session=session_id is not None)
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
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    interrupts = tuple(request.interrupt_before) if request.interrupt_before is not None else None
    schema = response_schema(request)
    if schema is not None and request.model in AGENT_GRAPHS:
        raise APIError(400, f"response_format: {request.model} is an agent, whose answers are free text; JSON "
                       "output is for `auto` and the expert models", param="response_format",
                       code="unsupported_parameter")  # fmt: skip
    tools = tool_offer(request)
    if tools is not None and request.model in AGENT_GRAPHS:
        raise APIError(400, f"tools: {request.model} is an agent with tools of its own; client tools are for "
                       "`auto` and the expert models", param="tools", code="unsupported_parameter")  # fmt: skip
    if tools is not None and schema is not None:
        raise APIError(400, "response_format: a JSON answer and tool calls cannot be asked for together",
                       param="response_format", code="unsupported_parameter")  # fmt: skip
    return ChatRequest(
        request.model, messages, sampling, session_id, interrupts, principal, json_schema=schema, tools=tools
    )
