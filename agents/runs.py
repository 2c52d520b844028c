"""Agent runs: a registered graph, checkpointed under the session id, paused for approval, resumed.

With a checkpointer every run is saved after each step under `thread_id` = session id. A run started with
`interrupt_before` (node names of its graph: `act` pauses the ReAct agent before each tool call, `specialist`
pauses the team after planning) stops there; `resume` continues it, approved or declined. A run cut short by a
killed process resumes the same way from its last checkpoint. What a run was started with (graph, expert,
sampling, interrupts, the caller's document scope) is kept in the checkpoint metadata, so a resume on any replica
runs alike. A new message on a session with a paused run starts a new run; the paused one is dropped.

A run's stream carries answer text and `ProgressEvent`s, and ends with one `RunOutcome`. Each graph is a
`GraphKind` (graph_kind.py) registered in `GRAPHS`; a new graph is one file and one line here.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from langgraph.types import Overwrite
from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agents.citations import CitationCheck
from chimera.agents.graph_kind import GraphKind, PendingWork, RunInputs, RunOutcome
from chimera.agents.react import ReactKind
from chimera.agents.state import ProgressEvent
from chimera.agents.team import TeamKind
from chimera.config import AgentConfig
from chimera.errors import ChimeraError
from chimera.memory.checkpoint.base import session_config
from chimera.memory.long_context.base import LongMemory
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import ExpertName
from chimera.tools.base import Scope, Tool
from chimera.tools.recall import Recall
from chimera.tools.search.types import DEFAULT_TENANT, SearchFilters

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import StateSnapshot

_tracer = trace.get_tracer("chimera.agents")

GRAPHS: dict[str, GraphKind] = {kind.name: kind for kind in (ReactKind(), TeamKind())}
RunDelta: TypeAlias = str | ProgressEvent | RunOutcome  # answer text, what the agent is doing, how it ended


class RunError(ChimeraError):
    """An agent run could not be started or resumed as asked."""


class InvalidInterruptError(RunError):
    """`interrupt_before` named a node the graph does not have."""


class NothingToResumeError(RunError):
    """The session has no paused or unfinished run."""


@dataclass(frozen=True)
class RunSettings:
    """What a run is started with; stored in its checkpoints' metadata so that a resume runs alike."""

    graph: str
    expert: ExpertName
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    interrupt_before: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT  # whose documents the run's tools read, and which of them (ACL groups)
    groups: tuple[str, ...] = ()
    whole_graph: bool = True  # may read the knowledge graph, which is not partitioned by tenant

    @property
    def scope(self) -> Scope:
        return Scope(SearchFilters(tenant=self.tenant, acl=frozenset(self.groups)), self.whole_graph)

    @property
    def kind(self) -> GraphKind:
        return GRAPHS[self.graph]

    def metadata(self) -> dict[str, str]:
        return {"chimera_run": json.dumps({**asdict(self), "sampling": asdict(self.sampling)})}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "RunSettings | None":
        """The settings a checkpoint was written with; None when it names none (or a graph not registered)."""
        raw = metadata.get("chimera_run")
        if not isinstance(raw, str):
            return None
        data = json.loads(raw)
        if data.get("graph") not in GRAPHS:
            return None
        sampling = SamplingOverrides(**{**data["sampling"], "stop": tuple(data["sampling"]["stop"])})
        scope = {"tenant": data.get("tenant", DEFAULT_TENANT), "groups": tuple(data.get("groups", ())),
                 "whole_graph": bool(data.get("whole_graph", False))}  # fmt: skip
        return cls(data["graph"], data["expert"], sampling, tuple(data["interrupt_before"]), **scope)


@dataclass(frozen=True)
class RunStatus:
    """A session's last run as the API reports it."""

    session: str
    status: Literal["none", "paused", "done"]
    graph: str | None = None
    next: tuple[str, ...] = ()
    pending: tuple[PendingWork, ...] = ()
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
        citation_check: CitationCheck | None = None,
    ) -> None:
        self.experts = experts
        self.tools = tools
        self.agent = agent
        self.checkpointer = checkpointer
        self.memory = memory
        self.recall_max_tokens = recall_max_tokens
        self.citation_check = citation_check
        self._graphs: dict[str, CompiledStateGraph] = {name: k.build(checkpointer) for name, k in GRAPHS.items()}

    def settings(
        self,
        graph: str,
        expert: ExpertName,
        sampling: SamplingOverrides,
        interrupt_before: tuple[str, ...] | None = None,
        scope: Scope | None = None,
    ) -> RunSettings:
        """A new run's settings: the request's interrupts (checked), else the config's that name `graph`'s nodes;
        its tools read what `scope` allows (None: the default tenant's documents without ACL, and the graph).

        Raises:
            InvalidInterruptError: the request named a node `graph` does not have.
        """
        nodes = GRAPHS[graph].nodes
        interrupts: tuple[str, ...]
        if interrupt_before is None:
            interrupts = tuple(n for n in self.agent.interrupt_before if n in nodes)
        else:
            unknown = [n for n in interrupt_before if n not in nodes]
            if unknown:
                raise InvalidInterruptError(
                    f"interrupt_before: {', '.join(unknown)} is not a node of the {graph} graph "
                    f"(nodes: {', '.join(nodes)})"
                )
            interrupts = interrupt_before
        scope = scope or Scope()
        filters = scope.filters
        return RunSettings(graph, expert, sampling, interrupts, filters.tenant or DEFAULT_TENANT,
                           tuple(sorted(filters.acl or ())), scope.whole_graph)  # fmt: skip

    async def run(
        self,
        settings: RunSettings,
        conversation: list[ChatMessage],
        session: str,
        parent: Context | None = None,
        *,
        ttl_s: int | None = None,
    ) -> AsyncIterator[RunDelta]:
        """Run a graph on the conversation from the start: progress events and the answer, then its outcome.

        `ttl_s`: the run's checkpoints expire this long after its last step (a one-shot request's session
        expires soon); None: the checkpointer's expiry. Resuming the run gives them the checkpointer's again.
        """
        if settings.interrupt_before and self.checkpointer is None:
            raise InvalidInterruptError("interrupt_before needs a checkpointer to pause and resume runs")
        fresh: dict[str, Any] = {  # a session's thread carries the last run's state: reset what accumulates
            "messages": conversation,
            "prompt_tokens": Overwrite(0),
            "completion_tokens": Overwrite(0),
            **settings.kind.reset(),
        }
        question = next((m for m in reversed(conversation) if m.role == "user"), None)
        async for delta in self._drive(settings, fresh, session, question, parent, ttl_s):
            yield delta

    async def resume(
        self, session: str, *, approve: bool, parent: Context | None = None
    ) -> tuple[RunSettings, AsyncIterator[RunDelta]]:
        """Continue the session's paused or unfinished run; declining turns the pending work into
        "declined by the user" results, and the run goes on to its answer.

        Raises:
            NothingToResumeError: the session has no such run.
        """
        settings, snapshot = await self._paused(session)
        values = snapshot.values
        question = next((m for m in reversed(values.get("messages", [])) if m.role == "user"), None)
        if not approve and (declined := settings.kind.decline(values, tuple(snapshot.next))) is not None:
            update, as_node = declined
            await self._graphs[settings.graph].aupdate_state(session_config(session), update, as_node=as_node)
        return settings, self._drive(settings, None, session, question, parent)

    async def status(self, session: str) -> RunStatus:
        """The session's last run: none, done, or paused (for approval, or cut short)."""
        try:
            settings, snapshot = await self._paused(session)
        except NothingToResumeError:
            done = self.checkpointer is not None and await self.checkpointer.aget_tuple(session_config(session))
            return RunStatus(session, "done" if done else "none")
        paused_for_approval = bool(set(snapshot.next) & set(settings.interrupt_before))
        reason: Literal["approval", "interrupted"] = "approval" if paused_for_approval else "interrupted"
        pending = settings.kind.pending(snapshot.values)
        return RunStatus(session, "paused", settings.graph, _nodes(snapshot.next), pending, reason)

    async def _paused(self, session: str) -> "tuple[RunSettings, StateSnapshot]":
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
        question: ChatMessage | None,
        parent: Context | None,
        ttl_s: int | None = None,
    ) -> AsyncIterator[RunDelta]:
        """Stream one leg of a run (from the start, or from its last checkpoint), then how it ended; its
        checkpoints expire after `ttl_s` (None: the checkpointer's expiry)."""
        kind = settings.kind
        span = _tracer.start_span("agent.graph", context=parent, attributes={"chimera.agent.graph": kind.name})
        graph = self._graphs[kind.name]
        config: RunnableConfig = {}
        if self.checkpointer is not None:
            config = {**session_config(session, ttl_s=ttl_s), "metadata": settings.metadata()}
        context = kind.context(await self._inputs(settings, session, trace.set_span_in_context(span)))
        final: dict[str, Any] = {}
        steps = cast(
            "AsyncGenerator[tuple[str, Any], None]",
            graph.astream(
                graph_input,
                config,
                context=context,
                stream_mode=["custom", "values"],
                interrupt_before=list(settings.interrupt_before) or None,
                # each step is in Redis before the next starts: a kill loses at most one
                durability="sync" if self.checkpointer is not None else None,
            ),
        )
        try:
            # Closed with this stream: a caller that stops reading (the client left) cancels the running node and
            # its generation at once, not when the garbage collector gets to the graph's stream.
            async with aclosing(steps):
                async for mode, chunk in steps:
                    if mode == "custom":
                        yield chunk
                    else:
                        final = cast("dict[str, Any]", chunk)
            snapshot = await graph.aget_state(config) if self.checkpointer is not None else None
            if snapshot is not None and snapshot.next:
                pending = kind.pending(snapshot.values)
                span.set_attribute("chimera.agent.paused_before", ",".join(snapshot.next))
                for work in pending:
                    yield ProgressEvent("paused", work.label, work.as_dict())
                yield RunOutcome("paused", next=_nodes(snapshot.next), pending=pending, question=question)
                return
            done = kind.finished(final)
            span.set_attributes(done.attributes)
            if done.stop_reason:
                span.set_attribute("chimera.agent.stop_reason", done.stop_reason)
            yield RunOutcome(
                "done",
                finish_reason=final.get("finish_reason", "stop"),
                prompt_tokens=final.get("prompt_tokens", 0),
                completion_tokens=final.get("completion_tokens", 0),
                citations=done.citations,
                stop_reason=done.stop_reason,
                question=question,
            )
        except (asyncio.CancelledError, GeneratorExit):  # its caller left: the graph's stream is closed above
            span.set_attribute("chimera.agent.cancelled", True)
            raise
        finally:
            span.end()

    async def _inputs(self, settings: RunSettings, session: str, parent: Context) -> RunInputs:
        """The run's experts, the tools it may use now (`recall` once the session's memory holds something, so that
        the run grounds in it as in the documents), its bounds and the request's sampling."""
        scope = settings.scope
        scoped = {name: tool.scoped(scope) for name, tool in self.tools.items() if tool.available()}
        tools = {name: tool for name, tool in scoped.items() if tool is not None}
        if self.memory is not None and (await self.memory.state_info(session)).tokens_read > 0:
            tools[Recall.name] = Recall(self.memory, session, max_tokens=self.recall_max_tokens)
        return RunInputs(
            self.experts, settings.expert, tools, self.agent, settings.sampling, parent, self.citation_check
        )


def _nodes(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Node names of a snapshot's next tasks, each once (parallel `Send`s name one node many times)."""
    return tuple(dict.fromkeys(tasks))
