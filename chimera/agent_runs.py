"""Agent runs: the ReAct graph or the team, checkpointed under the session id, paused for approval, resumed.

With a checkpointer every run is saved after each step under `thread_id` = session id. A run started with
`interrupt_before` (graph node names: `act` pauses the ReAct agent before each tool call, `specialist` pauses
the team after planning) stops there; `resume` continues it, approved or declined. A run cut short by a killed
process resumes the same way from its last checkpoint. What a run was started with (graph, expert, sampling,
interrupts) is kept in the checkpoint metadata, so a resume on any replica runs alike. A new message on a
session with a paused run starts a new run; the paused one is dropped.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from langgraph.types import Overwrite
from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agents.react import build_react_graph, cited
from chimera.agents.state import AgentContext, ProgressEvent, ToolCall
from chimera.agents.team import SubResult, TeamContext, build_team_graph, team_citations, team_stop_reason
from chimera.config import AgentConfig
from chimera.errors import ChimeraError
from chimera.memory.checkpoint.base import session_config
from chimera.memory.long_context.base import LongMemory
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import ExpertName
from chimera.tools.base import Tool
from chimera.tools.recall import Recall
from chimera.tools.search.types import Citation

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

_tracer = trace.get_tracer("chimera.chat")

Delta: TypeAlias = str | ProgressEvent  # answer text, or what the agent is doing
GraphName = Literal["react", "team"]
GRAPH_NODES: dict[GraphName, tuple[str, ...]] = {
    "react": ("ground", "decide", "act", "answer"),
    "team": ("plan", "specialist", "synthesize"),
}
DECLINED = "declined by the user"


class RunError(ChimeraError):
    """An agent run could not be started or resumed as asked."""


class InvalidInterruptError(RunError):
    """`interrupt_before` named a node the graph does not have."""


class NothingToResumeError(RunError):
    """The session has no paused or unfinished run."""


@dataclass(frozen=True)
class RunSettings:
    """What a run is started with; stored in its checkpoints' metadata so that a resume runs alike."""

    graph: GraphName
    expert: ExpertName
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    interrupt_before: tuple[str, ...] = ()

    def metadata(self) -> dict[str, str]:
        return {"chimera_run": json.dumps({**asdict(self), "sampling": asdict(self.sampling)})}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "RunSettings | None":
        raw = metadata.get("chimera_run")
        if not isinstance(raw, str):
            return None
        data = json.loads(raw)
        sampling = SamplingOverrides(**{**data["sampling"], "stop": tuple(data["sampling"]["stop"])})
        return cls(data["graph"], data["expert"], sampling, tuple(data["interrupt_before"]))


@dataclass
class RunOutcome:
    """How a run ended: answered, or paused before `next` with `pending` work awaiting approval."""

    status: Literal["done", "paused"] = "done"
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    citations: list[Citation] = field(default_factory=list)
    stop_reason: str | None = None
    next: tuple[str, ...] = ()
    pending: list[dict[str, Any]] = field(default_factory=list)
    question: ChatMessage | None = None  # the user message the run answers (stored with the answer on resume)


@dataclass(frozen=True)
class RunStatus:
    """A session's last run as the API reports it."""

    session: str
    status: Literal["none", "paused", "done"]
    graph: GraphName | None = None
    next: tuple[str, ...] = ()
    pending: list[dict[str, Any]] = field(default_factory=list)
    reason: Literal["approval", "interrupted"] | None = None  # paused at an interrupt, or cut short (killed)


class AgentRuns:
    """Starts, pauses and resumes agent runs on the experts and tools it is given."""

    def __init__(
        self,
        *,
        experts: dict[ExpertName, Expert],
        tools: dict[str, Tool],
        agent: AgentConfig,
        checkpointer: "BaseCheckpointSaver | None" = None,
        memory: LongMemory | None = None,
        recall_max_tokens: int = 128,
    ) -> None:
        self.experts = experts
        self.tools = tools
        self.agent = agent
        self.checkpointer = checkpointer
        self.memory = memory
        self.recall_max_tokens = recall_max_tokens
        self._graphs: dict[GraphName, CompiledStateGraph] = {
            "react": build_react_graph(checkpointer),
            "team": build_team_graph(checkpointer),
        }

    def settings(
        self,
        graph: GraphName,
        expert: ExpertName,
        sampling: SamplingOverrides,
        interrupt_before: tuple[str, ...] | None = None,
    ) -> RunSettings:
        """A new run's settings: the request's interrupts (checked), else the config's that name `graph`'s nodes.

        Raises:
            InvalidInterruptError: the request named a node `graph` does not have.
        """
        interrupts: tuple[str, ...]
        if interrupt_before is None:
            interrupts = tuple(n for n in self.agent.interrupt_before if n in GRAPH_NODES[graph])
        else:
            interrupts = self.check_interrupts(graph, interrupt_before)
        return RunSettings(graph, expert, sampling, interrupts)

    @staticmethod
    def check_interrupts(graph: GraphName, names: tuple[str, ...]) -> tuple[str, ...]:
        """`names` if each is a node of `graph`.

        Raises:
            InvalidInterruptError: a name the graph does not have.
        """
        unknown = [n for n in names if n not in GRAPH_NODES[graph]]
        if unknown:
            raise InvalidInterruptError(
                f"interrupt_before: {', '.join(unknown)} is not a node of the {graph} graph "
                f"(nodes: {', '.join(GRAPH_NODES[graph])})"
            )
        return names

    async def run(
        self,
        settings: RunSettings,
        conversation: list[ChatMessage],
        session: str,
        outcome: RunOutcome,
        parent: Context | None = None,
    ) -> AsyncIterator[Delta]:
        """Run a graph on the conversation from the start, streaming progress events and the answer."""
        if settings.interrupt_before and self.checkpointer is None:
            raise InvalidInterruptError("interrupt_before needs a checkpointer to pause and resume runs")
        fresh: dict[str, Any] = {  # a session's thread carries the last run's state: reset what accumulates
            "messages": conversation,
            "prompt_tokens": Overwrite(0),
            "completion_tokens": Overwrite(0),
            **(
                {"tool_calls": Overwrite([]), "pending": None, "steps": 0, "stop_reason": None}
                if settings.graph == "react"
                else {"results": Overwrite([]), "plan": []}
            ),
        }
        outcome.question = next((m for m in reversed(conversation) if m.role == "user"), None)
        async for delta in self._drive(settings, fresh, session, outcome, parent):
            yield delta

    async def resume(
        self, session: str, *, approve: bool, outcome: RunOutcome, parent: Context | None = None
    ) -> tuple[RunSettings, AsyncIterator[Delta]]:
        """Continue the session's paused or unfinished run; declining turns the pending work into
        "declined by the user" observations (ReAct) or results (team), and the run goes on to its answer.

        Raises:
            NothingToResumeError: the session has no such run.
        """
        settings, snapshot = await self._paused(session)
        graph = self._graphs[settings.graph]
        config = session_config(session)
        values = snapshot.values
        outcome.question = next((m for m in reversed(values.get("messages", [])) if m.role == "user"), None)
        if not approve and settings.graph == "react" and values.get("pending") is not None:
            call: ToolCall = values["pending"]
            declined = ToolCall(call.tool, call.arguments, error=DECLINED)
            await graph.aupdate_state(config, {"tool_calls": [declined], "pending": None}, as_node="act")
        elif not approve and settings.graph == "team" and "specialist" in snapshot.next:
            results = [SubResult(t.agent, t.task, f"({DECLINED})", stop_reason="declined") for t in values["plan"]]
            await graph.aupdate_state(config, {"results": results}, as_node="specialist")
        return settings, self._drive(settings, None, session, outcome, parent)

    async def status(self, session: str) -> RunStatus:
        """The session's last run: none, done, or paused (for approval, or cut short)."""
        try:
            settings, snapshot = await self._paused(session)
        except NothingToResumeError:
            done = self.checkpointer is not None and await self.checkpointer.aget_tuple(session_config(session))
            return RunStatus(session, "done" if done else "none")
        paused_for_approval = bool(set(snapshot.next) & set(settings.interrupt_before))
        reason: Literal["approval", "interrupted"] = "approval" if paused_for_approval else "interrupted"
        return RunStatus(
            session, "paused", settings.graph, _nodes(snapshot.next), _pending(settings.graph, snapshot.values), reason
        )

    async def _paused(self, session: str) -> tuple[RunSettings, Any]:
        if self.checkpointer is None:
            raise NothingToResumeError("runs are not checkpointed in this deployment; nothing can be resumed")
        saved = await self.checkpointer.aget_tuple(session_config(session))
        settings = RunSettings.from_metadata(dict(saved.metadata)) if saved is not None else None
        if settings is None:
            raise NothingToResumeError(f"session {session} has no agent run")
        snapshot = await self._graphs[settings.graph].aget_state(session_config(session))
        if not snapshot.next:
            raise NothingToResumeError(f"the last agent run of session {session} has finished")
        return settings, snapshot

    async def _drive(
        self,
        settings: RunSettings,
        graph_input: dict[str, Any] | None,
        session: str,
        outcome: RunOutcome,
        parent: Context | None,
    ) -> AsyncIterator[Delta]:
        """Stream one leg of a run (from the start, or from its last checkpoint) and record how it ended."""
        span = _tracer.start_span("agent.graph", context=parent, attributes={"chimera.agent.graph": settings.graph})
        graph = self._graphs[settings.graph]
        config: RunnableConfig = {}
        if self.checkpointer is not None:
            config = {**session_config(session), "metadata": settings.metadata()}
        context = await self._context(settings, session, trace.set_span_in_context(span))
        final: dict[str, Any] = {}
        try:
            async for mode, chunk in graph.astream(
                graph_input,
                config,
                context=context,
                stream_mode=["custom", "values"],
                interrupt_before=list(settings.interrupt_before) or None,
                durability="sync",  # each step is in Redis before the next starts: a kill loses at most one
            ):
                if mode == "custom":
                    yield chunk
                else:
                    final = cast("dict[str, Any]", chunk)
            snapshot = await graph.aget_state(config) if self.checkpointer is not None else None
            if snapshot is not None and snapshot.next:
                outcome.status, outcome.next = "paused", _nodes(snapshot.next)
                outcome.pending = _pending(settings.graph, snapshot.values)
                span.set_attribute("chimera.agent.paused_before", ",".join(snapshot.next))
                for item in outcome.pending:
                    yield ProgressEvent("paused", str(item.get("tool", item.get("agent"))), item)
                return
            outcome.status = "done"
            outcome.finish_reason = final.get("finish_reason", "stop")
            outcome.prompt_tokens = final.get("prompt_tokens", 0)
            outcome.completion_tokens = final.get("completion_tokens", 0)
            if settings.graph == "team":
                outcome.citations = team_citations(final)
                outcome.stop_reason = team_stop_reason(final)
                span.set_attribute("chimera.team.tasks", len(final.get("plan", [])))
            else:
                outcome.citations = cited(final.get("tool_calls", []))
                outcome.stop_reason = final.get("stop_reason")
                span.set_attributes(
                    {
                        "chimera.agent.steps": final.get("steps", 0),
                        "chimera.agent.tool_calls": len(final.get("tool_calls", [])),
                    }
                )
            if outcome.stop_reason:
                span.set_attribute("chimera.agent.stop_reason", outcome.stop_reason)
        finally:
            span.end()

    async def _context(self, settings: RunSettings, session: str, parent: Context) -> AgentContext | TeamContext:
        sampling = settings.sampling
        if sampling.max_tokens is None:
            sampling = SamplingOverrides(**{**asdict(sampling), "max_tokens": self.agent.answer_max_tokens})
        tools = {name: tool for name, tool in self.tools.items() if tool.available()}
        if self.memory is not None and (await self.memory.state_info(session)).tokens_read > 0:
            tools[Recall.name] = Recall(self.memory, session, max_tokens=self.recall_max_tokens)
        if settings.graph == "team":
            return TeamContext(
                experts=self.experts,
                tools=tools,
                max_tasks=self.agent.team_max_tasks,
                specialist_steps=self.agent.max_steps,
                decision_max_tokens=self.agent.decision_max_tokens,
                max_run_tokens=self.agent.max_run_tokens,
                answer_sampling=sampling,
                trace_parent=parent,
            )
        return AgentContext(
            expert=self.experts[settings.expert],
            tools={name: tool for name, tool in tools.items() if name in self.agent.react_tools},
            max_steps=self.agent.max_steps,
            decision_max_tokens=self.agent.decision_max_tokens,
            max_run_tokens=self.agent.max_run_tokens,
            answer_sampling=sampling,
            trace_parent=parent,
        )


def _nodes(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Node names of a snapshot's next tasks, each once (parallel `Send`s name one node many times)."""
    return tuple(dict.fromkeys(tasks))


def _pending(graph: GraphName, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The work a paused run would do next: the tool call (ReAct) or the planned sub-tasks (team)."""
    if graph == "react":
        call = values.get("pending")
        return [{"tool": call.tool, "arguments": call.arguments}] if call is not None else []
    return [{"agent": t.agent, "task": t.task} for t in values.get("plan", [])]
