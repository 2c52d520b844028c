"""What `AgentRuns` needs to know of one agent graph, and the typed things a run hands back.

Each graph (ReAct, team) has one `GraphKind` beside its graph, registered in `runs.py`: how to build it, the
fresh input of a new run on a session's thread, the work a paused run would do next, how to decline that work,
the run's per-run context, and what its final state means. A run streams text and `ProgressEvent`s and ends
with one `RunOutcome`.
"""

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from opentelemetry.context import Context

from chimera.agents.citations import CitationCheck
from chimera.config import AgentConfig
from chimera.function_calls import FunctionCall
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import ExpertName
from chimera.tools.base import Tool
from chimera.tools.search.types import Citation

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

DECLINED = "declined by the user"


@dataclass(frozen=True)
class PendingToolCall:
    """A ReAct run paused before `act`: the tool call it would make."""

    tool: str
    arguments: dict[str, Any]

    @property
    def label(self) -> str:
        return self.tool

    def describe(self) -> str:
        return f"{self.tool} {json.dumps(self.arguments)}"

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments}


@dataclass(frozen=True)
class PendingSubTask:
    """A team run paused before its specialists: one planned sub-task, for a human to approve or decline."""

    agent: str
    task: str  # what the specialist is asked to do, in full
    tools: tuple[str, ...] = ()  # the tools it may call for it

    @property
    def label(self) -> str:
        return self.agent

    def describe(self) -> str:
        """`math (calculator): Compute 15% of 240` — who will do what, with which tools."""
        tools = f" ({', '.join(self.tools)})" if self.tools else ""
        return f"{self.agent}{tools}: {self.task}"

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "task": self.task, "tools": list(self.tools)}


PendingWork = PendingToolCall | PendingSubTask


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: answered (`done`), or `paused` before `next` with `pending` work awaiting approval."""

    status: Literal["done", "paused"] = "done"
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    citations: tuple[Citation, ...] = ()
    stop_reason: str | None = None  # why the tool loop ended (answered, repeated_call, step/token budget)
    next: tuple[str, ...] = ()
    pending: tuple[PendingWork, ...] = ()
    question: ChatMessage | None = None  # the user message the run answers (stored with the answer on resume)
    tool_calls: tuple[FunctionCall, ...] = ()  # expert answers with client tools: the calls, for the client to run


@dataclass(frozen=True)
class Finished:
    """What a graph's final state says: its sources, why it stopped, and span attributes worth keeping."""

    citations: tuple[Citation, ...]
    stop_reason: str | None
    attributes: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInputs:
    """What a run's context is made of: the experts, the tools offered now, the bounds, the answer's sampling."""

    experts: dict[ExpertName, Expert]
    expert: ExpertName  # the routed expert
    tools: dict[str, Tool]
    agent: AgentConfig
    answer_sampling: SamplingOverrides  # the request's; `max_tokens` None: each expert's answer cap (`sampling_for`)
    trace_parent: Context | None
    citation_check: CitationCheck | None = None  # how the answer's citations are checked (None: not checked)

    def sampling_for(self, expert: ExpertName) -> SamplingOverrides:
        """The sampling of an answer `expert` writes: the request's, capped at the agent's answer budget for that
        expert unless the request set `max_tokens`."""
        if self.answer_sampling.max_tokens is not None:
            return self.answer_sampling
        return replace(self.answer_sampling, max_tokens=self.agent.answer_tokens(expert))


class GraphKind(ABC):
    """One agent graph as `AgentRuns` drives it. Subclasses set `name`, `model`, `description` and `nodes`."""

    name: ClassVar[str]  # the graph's name in run settings and checkpoints
    model: ClassVar[str]  # the `model` value of the chat endpoint that runs it
    description: ClassVar[str]  # what /v1/models says of it
    nodes: ClassVar[tuple[str, ...]]  # the node names `interrupt_before` may name

    @abstractmethod
    def build(self, checkpointer: "BaseCheckpointSaver | None") -> "CompiledStateGraph":
        """The compiled graph, checkpointed by `checkpointer`."""

    @abstractmethod
    def reset(self) -> dict[str, Any]:
        """The state channels a new run on the session's thread starts from anew (messages and usage aside)."""

    @abstractmethod
    def pending(self, values: dict[str, Any]) -> tuple[PendingWork, ...]:
        """The work a paused run would do next."""

    @abstractmethod
    def decline(self, values: dict[str, Any], next_nodes: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
        """The state update (and the node it is applied as) that turns the pending work into declined results;
        None when nothing is pending."""

    @abstractmethod
    def context(self, inputs: RunInputs) -> Any:
        """The graph's per-run context (LangGraph's `context_schema`)."""

    @abstractmethod
    def finished(self, final: dict[str, Any]) -> Finished:
        """Sources and stop reason of a finished run's final state."""
