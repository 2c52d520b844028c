"""The engine seam: what every LLM engine takes, yields and reports.

`VLLMEngine` (vllm_engine.py) is the real one. Graph-logic unit tests use a scripted fake of this interface.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chimera.errors import ChimeraError
from chimera.messages import ChatMessage

FinishReason = Literal["stop", "length", "abort"]


class EngineError(ChimeraError):
    """The engine could not serve a request."""


class PromptTooLongError(EngineError):
    """The prompt does not fit the engine's context window."""


class EngineUnavailableError(EngineError):
    """The engine is not running or died."""


class UnsupportedSchemaError(EngineError):
    """The engine cannot guide decoding by the request's JSON schema (a feature its grammar backend lacks)."""


class GenerationRequest(BaseModel):
    """One generation: a conversation, sampling, and optionally a JSON schema the output must satisfy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(description="Unique id; `abort` takes it.")
    messages: list[ChatMessage] = Field(min_length=1, description="Conversation, system prompt included.")
    max_tokens: int = Field(gt=0, description="Cap on generated tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = Field((), description="Strings that end generation.")
    seed: int | None = Field(None, description="Sampling seed.")
    ignore_eos: bool = Field(False, description="Generate `max_tokens` even past end-of-sequence (benchmarks).")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="Penalty on tokens already generated.")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="Penalty by how often a token was generated.")
    json_schema: dict[str, Any] | None = Field(None, description="Guided decoding: output is JSON of this schema.")
    traceparent: str | None = Field(None, description="W3C traceparent of the caller's span.")


class GenerationDelta(BaseModel):
    """New text since the previous delta; the last delta carries `finish_reason` and token counts."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class EngineHealth(BaseModel):
    """A snapshot of an engine's state; the router's load-awareness reads it."""

    model: str
    healthy: bool
    running: int = Field(description="Requests the engine is working on now.")


class LLMEngine(ABC):
    """A started LLM engine. Async-first: callers await `start` once, then stream from `generate`."""

    @abstractmethod
    async def start(self) -> None:
        """Load weights and start serving."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream the completion of `request`; closing the iterator aborts the request.

        Raises:
            PromptTooLongError: before the first delta, if the prompt does not fit.
            EngineUnavailableError: if the engine is not running.
        """

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running request; unknown ids are ignored."""

    @abstractmethod
    async def health(self) -> EngineHealth:
        """Report whether the engine serves, and its load."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stop the engine and free its processes and memory."""
