"""State and run context of the ReAct agent."""

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from opentelemetry.context import Context

from chimera.agents.citations import CitationCheck
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.tools.base import Tool
from chimera.tools.search.types import Citation

if TYPE_CHECKING:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer


@dataclass(frozen=True)
class ToolCall:
    """One tool call the agent made, and what came back (a result or an error, never both)."""

    tool: str
    arguments: dict[str, Any]
    result: str | None = None
    error: str | None = None
    citations: tuple[Citation, ...] = ()  # passages the result quoted, numbered across the whole run

    @property
    def observation(self) -> str:
        return f"error: {self.error}" if self.error is not None else self.result or ""


@dataclass(frozen=True)
class ProgressEvent:
    """What the agent is doing, streamed before its answer: a tool call as it starts, its result as it ends, and
    the work a run paused for approval would do next."""

    kind: Literal["tool_call", "tool_result", "paused"]
    tool: str
    arguments: dict[str, Any]
    observation: str | None = None  # tool_result only
    error: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "tool": self.tool, "arguments": self.arguments,
                "observation": self.observation, "error": self.error}  # fmt: skip


class ReactState(TypedDict, total=False):
    """What flows through the ReAct graph. Lists with reducers accumulate across steps."""

    messages: list[ChatMessage]  # the conversation to answer, set once
    tool_calls: Annotated[list[ToolCall], operator.add]  # every executed call, in order
    pending: ToolCall | None  # chosen by `decide`, executed by `act`
    steps: int  # decisions made so far
    stop_reason: str | None  # why the tool loop ended (`react.stop_reason`, or `repeated_result` from `act`)
    answer: str
    citations: tuple[Citation, ...] | None  # the answer's sources once checked (None: not checked, see `cited`)
    finish_reason: str
    prompt_tokens: Annotated[int, operator.add]
    completion_tokens: Annotated[int, operator.add]


@dataclass(frozen=True)
class AgentContext:
    """Per-run dependencies, injected through LangGraph's runtime context."""

    expert: Expert
    tools: dict[str, Tool]
    max_steps: int
    decision_max_tokens: int
    max_run_tokens: int | None = None  # prompt + completion tokens of the tool loop before it must answer
    answer_sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    trace_parent: Context | None = None  # spans of the nodes hang under the caller's span
    citation_check: CitationCheck | None = None  # None: the answer's citations are listed as retrieved
    require_sources: bool = False  # a run that found nothing and ran no tool but searches abstains


# What agent state holds besides JSON values. LangGraph's checkpoint serializer rebuilds only the classes it is
# told about (anything else from a tampered checkpoint store is refused, not imported).
CHECKPOINTED_TYPES: tuple[tuple[str, str], ...] = (
    ("chimera.messages", "ChatMessage"),
    ("chimera.agents.state", "ToolCall"),
    ("chimera.tools.search.types", "Citation"),
    ("chimera.agents.team", "SubTask"),
    ("chimera.agents.team", "SubResult"),
)


def checkpoint_serializer() -> "JsonPlusSerializer":
    """LangGraph's serializer, allowed to rebuild the agents' state types (and its built-in safe ones)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINTED_TYPES)
