"""OpenAI chat-completions wire models. Tolerant of extra fields while parsing, like vLLM's protocol.py (clients send
many); a chat or embeddings request's unknown top-level field is then refused by the API (`refuse_unknown_fields`),
as OpenAI does, where vLLM only logs it: a parameter is honoured or refused, never dropped without a word."""

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Wire):
    type: str
    text: str | None = None


class FunctionSpec(_Wire):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema of the arguments (an object).")
    strict: bool | None = Field(None, description="Guided decoding always holds the arguments to the schema.")


class ToolSpec(_Wire):
    type: Literal["function"]
    function: FunctionSpec


class CalledFunction(_Wire):
    name: str
    arguments: str = Field(description="The arguments, a JSON object as text.")


class WireToolCall(_Wire):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: CalledFunction


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class RequestMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = Field(None, description="`role: assistant`: the calls it made.")
    tool_call_id: str | None = Field(None, description="`role: tool` only, required there: the call it answers.")

    def text(self) -> str:
        """Plain text of the message; only text parts are supported."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        unsupported = sorted({p.type for p in self.content if p.type != "text"})
        if unsupported:
            raise ValueError(f"unsupported content part type(s): {', '.join(unsupported)}")
        return "".join(p.text or "" for p in self.content)


class StreamOptions(_Wire):
    include_usage: bool = False


class JsonSchemaSpec(_Wire):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The schema's name.")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema (draft 2020-12 unless `$schema`).")
    strict: bool | None = Field(None, description="Guided decoding always holds the output to the schema.")


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = Field(None, description="With `type: json_schema` (required there).")

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only there")
        return self


class ChatCompletionRequest(_Wire):
    """The accepted fields; any other top-level field is refused (400 `unrecognized_parameter`), as OpenAI does."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    model: str = Field(min_length=1)
    messages: list[RequestMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63, description="64-bit sampling seed.")
    ignore_eos: bool = Field(False, description="vLLM extension: keep generating past end-of-sequence (benchmarks).")
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is supported.")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = Field(
        None,
        description="`json_object` or `json_schema`: the output is JSON (of that schema) by guided decoding. "
        "Expert models and `auto` only; an invalid schema is a 400.",
    )
    logprobs: bool | None = Field(None, description="Not supported yet: `true` is a 400.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Not supported yet: a 400 when set.")
    tools: list[ToolSpec] | None = Field(
        None,
        max_length=64,
        description="Functions the model may call (expert models and `auto`): its answer is then `tool_calls`, "
        "decoded under a JSON schema of the tools, so the arguments always match their schema.",
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description='"auto" (the default with tools), "none", "required", or one named function.'
    )
    parallel_tool_calls: bool | None = Field(None, description="False: at most one call per answer.")
    user: str | None = Field(None, description="The end user, for the caller's own records; accepted.")
    interrupt_before: list[str] | None = Field(
        None,
        max_length=8,
        description="Chimera extension, agent models: pause the run before these graph nodes for approval "
        "(`act`: each ReAct tool call; `specialist`: the team's plan). Unset: the config's.",
    )

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _one_choice(cls, v: object) -> object:
        """One error naming `tool_choice` (a union's would name each of its members)."""
        if isinstance(v, dict):
            try:
                return NamedToolChoice.model_validate(v)
            except ValidationError as e:
                raise ValueError('a named choice is {"type": "function", "function": {"name": …}}') from e
        if v is not None and v not in ("none", "auto", "required"):
            raise ValueError('"none", "auto", "required" or {"type": "function", "function": {"name": …}}')
        return v

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stop_tuple(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class EmbeddingRequest(_Wire):
    """POST /v1/embeddings. Any other top-level field is refused (400 `unrecognized_parameter`)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    input: str | list[str] = Field(description="A text, or a list of texts (each embedded on its own).")
    model: str = Field(min_length=1, description="The embedding model's id (see /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as little-endian float32 bytes, base64-encoded."
    )
    dimensions: int | None = Field(None, gt=0, description="Only the model's own dimension is accepted.")
    user: str | None = Field(None, description="The end user, for the caller's own records; accepted.")


class ResumeRequest(_Wire):
    """POST /v1/sessions/{id}/resume: go on with the session's paused or unfinished agent run."""

    approve: bool = Field(True, description="False declines the pending tool call or plan; the run then answers.")
    stream: bool = False
    stream_options: StreamOptions | None = None


class TaskCreateRequest(_Wire):
    """POST /v1/tasks: a long task, run by a worker; the answer is the task (202), followed by id."""

    kind: str = Field(description="agent | ingest | eval")
    input: dict[str, Any] = Field(
        description="agent: {prompt | messages, interrupt_before?, max_tokens?}; ingest: "
        "{paths, tenant?, acl?, delete?}; eval: {eval: router|guard|retrieval, data}"
    )
    model: str | None = Field(None, description="agent tasks: any model the chat endpoint serves (default chimera).")
    session_id: str | None = Field(None, description="agent tasks: continue this session (default: a new one).")
    idempotency_key: str | None = Field(None, description="The same key and payload return the existing task.")
    priority: str = Field("normal", description="high | normal | low, within the caller's tenant.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Up to 16 labels, returned with the task.")


class TaskResumeRequest(_Wire):
    """POST /v1/tasks/{id}/resume: approve (or decline) a paused agent task's pending work."""

    approve: bool = True


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None


class Extension(BaseModel):
    """Chimera's additions to OpenAI's response (the `chimera` field).

    On a response or a stream's finish chunk: the sources the answer cites, and why an agent's tool loop ended
    (`answered`, `repeated_call`, `step_budget`, `token_budget`). While an agent streams: one chunk with an empty
    delta per progress event, `{"type": "tool_call" | "tool_result" | "paused", "tool", "arguments",
    "observation", "error"}`. A run paused for approval ends with `run`: `{"status": "paused", "next": [nodes],
    "pending": [tool calls or sub-tasks], "resume": "/v1/sessions/<id>/resume"}`.
    """

    citations: list[dict[str, Any]] = Field(default_factory=list)
    stop_reason: str | None = None
    event: dict[str, Any] | None = None
    run: dict[str, Any] | None = None  # a run paused for approval: {status, next, pending, resume}


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    chimera: Extension | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    chimera: Extension | None = None  # on the finish chunk only


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "chimera"
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the API returns: OpenAI's shape."""

    error: ErrorBody


def error_payload(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": ErrorBody(message=message, type=type_, param=param, code=code).model_dump()}
