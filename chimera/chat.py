"""The chat service: one request from validated messages to a stream of answer text.

model → path: `chimera` (= `chimera-react`) runs the ReAct agent on the routed expert; `chimera-team` runs the
supervisor team over all experts; `auto` routes to one expert without tools;
`chimera-<expert>` names the expert. Around it: session history from Redis, input/output rails, spans.
"""

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agents.react import build_react_graph, cited
from chimera.agents.state import AgentContext, ProgressEvent
from chimera.agents.team import TeamContext, build_team_graph, team_citations
from chimera.config import AgentConfig
from chimera.errors import ChimeraError
from chimera.guardrails.base import Rails
from chimera.memory.sessions.base import SessionStore, check_session_id
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.router.base import ExpertLoad, RouteDecision, Router
from chimera.models.specs import EXPERT_NAMES, ExpertName
from chimera.tools.base import Tool
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.chat")

Delta: TypeAlias = str | ProgressEvent  # answer text, or (agents only) what the agent is doing

AGENT_MODEL = "chimera"
REACT_MODEL = "chimera-react"
TEAM_MODEL = "chimera-team"
AGENT_MODELS = (AGENT_MODEL, REACT_MODEL, TEAM_MODEL)
AUTO_MODEL = "auto"
EXPERT_PREFIX = "chimera-"
REFUSAL = "I can't help with that request."


class UnknownModelError(ChimeraError):
    """The request named a model Chimera does not serve."""


def served_models() -> list[str]:
    """Every `model` value the chat endpoint accepts."""
    return [*AGENT_MODELS, AUTO_MODEL, *(EXPERT_PREFIX + e for e in EXPERT_NAMES)]


@dataclass(frozen=True)
class ChatRequest:
    """What the service needs of an API request, already validated."""

    model: str
    messages: list[ChatMessage]
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    session_id: str | None = None


@dataclass
class ChatOutcome:
    """How the answer ended; filled in as the stream finishes."""

    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    citations: list[Citation] = field(default_factory=list)  # passages the agent's answer drew on
    stop_reason: str | None = None  # why the agent's tool loop ended (answered, repeated_call, step/token budget)


@dataclass
class ChatStream:
    """A started chat: what the response headers need, then the answer's text deltas, with the agent's progress
    events (tool calls and results) before them."""

    model: str
    decision: RouteDecision
    session_id: str
    outcome: ChatOutcome
    _deltas: AsyncIterator[Delta]

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._deltas


class ChatService:
    """Runs chat requests on the experts; the HTTP layer only translates to and from the wire."""

    def __init__(
        self,
        *,
        experts: dict[ExpertName, Expert],
        router: Router,
        sessions: SessionStore,
        rails: Rails,
        tools: dict[str, Tool],
        agent: AgentConfig,
        load: Callable[[], Mapping[ExpertName, ExpertLoad]] | None = None,
    ) -> None:
        self.experts = experts
        self.router = router
        self.sessions = sessions
        self.rails = rails
        self.tools = tools
        self.agent = agent
        self.load = load or dict
        self._graph = build_react_graph()
        self._team = build_team_graph()

    def resolve(self, model: str) -> ExpertName | None:
        """The expert a model name fixes, None when the router decides.

        Raises:
            UnknownModelError: for any name outside `served_models()`.
        """
        if model in (*AGENT_MODELS, AUTO_MODEL):
            return None
        name = model.removeprefix(EXPERT_PREFIX)
        if model.startswith(EXPERT_PREFIX) and name in EXPERT_NAMES:
            return name
        raise UnknownModelError(f"The model `{model}` does not exist. Available: {', '.join(served_models())}")

    async def start(self, request: ChatRequest, *, parent: Context | None = None) -> ChatStream:
        """Prepare the request and wait for the first delta, so that errors raise before any byte is sent.

        Raises:
            UnknownModelError, InvalidSessionIdError, SessionError, EngineError: mapped to HTTP by the API.
        """
        fixed = self.resolve(request.model)
        session_id = check_session_id(request.session_id) if request.session_id else uuid.uuid4().hex
        history = await self.sessions.load(session_id) if request.session_id else []
        conversation = [*history, *request.messages]
        outcome = ChatOutcome()

        with _tracer.start_as_current_span("guardrails.input", context=parent) as span:
            verdict = await self.rails.check_input(conversation)
            span.set_attributes({"chimera.rails.enabled": self.rails.enabled, "chimera.rails.allowed": verdict.allowed})
        with _tracer.start_as_current_span("router.route", context=parent) as span:
            if fixed is not None:
                decision = RouteDecision(expert=fixed, confidence=1.0, explicit=True)
            else:
                decision = self.router.route(conversation, load=self.load())
            span.set_attributes(decision.as_attributes())

        if not verdict.allowed:
            outcome.finish_reason = "content_filter"
            deltas = _once(REFUSAL, outcome)
        else:
            conversation = verdict.messages or conversation
            expert = self.experts[decision.expert]
            if request.model in AGENT_MODELS:
                deltas = self._run_agent(request.model, expert, conversation, request.sampling, outcome, parent)
            else:
                deltas = self._run_expert(expert, conversation, request.sampling, outcome, parent)
        deltas = self._finish(deltas, request.messages, session_id, outcome, parent)
        first = await anext(deltas, None)
        return ChatStream(request.model, decision, session_id, outcome, _prepend(first, deltas))

    async def _run_expert(
        self,
        expert: Expert,
        conversation: list[ChatMessage],
        sampling: SamplingOverrides,
        outcome: ChatOutcome,
        parent: Context | None,
    ) -> AsyncIterator[str]:
        async for delta in expert.stream(conversation, sampling, parent=parent):
            outcome.prompt_tokens, outcome.completion_tokens = delta.prompt_tokens, delta.completion_tokens
            outcome.finish_reason = delta.finish_reason or outcome.finish_reason
            if delta.text:
                yield delta.text

    async def _run_agent(
        self,
        model: str,
        expert: Expert,
        conversation: list[ChatMessage],
        sampling: SamplingOverrides,
        outcome: ChatOutcome,
        parent: Context | None,
    ) -> AsyncIterator[Delta]:
        """Run the ReAct graph (`chimera`, `chimera-react`) or the team (`chimera-team`), streaming its answer."""
        graph_name = "team" if model == TEAM_MODEL else "react"
        span = _tracer.start_span("agent.graph", context=parent, attributes={"chimera.agent.graph": graph_name})
        if sampling.max_tokens is None:
            sampling = SamplingOverrides(**{**sampling.__dict__, "max_tokens": self.agent.answer_max_tokens})
        tools = {name: tool for name, tool in self.tools.items() if tool.available()}
        context: AgentContext | TeamContext
        if graph_name == "team":
            graph, context = (
                self._team,
                TeamContext(
                    experts=self.experts,
                    tools=tools,
                    max_tasks=self.agent.team_max_tasks,
                    specialist_steps=self.agent.max_steps,
                    decision_max_tokens=self.agent.decision_max_tokens,
                    answer_sampling=sampling,
                    trace_parent=trace.set_span_in_context(span),
                ),
            )
        else:
            graph, context = (
                self._graph,
                AgentContext(
                    expert=expert,
                    tools={name: tool for name, tool in tools.items() if name in self.agent.react_tools},
                    max_steps=self.agent.max_steps,
                    decision_max_tokens=self.agent.decision_max_tokens,
                    max_run_tokens=self.agent.max_run_tokens,
                    answer_sampling=sampling,
                    trace_parent=trace.set_span_in_context(span),
                ),
            )
        final: dict = {}
        try:
            async for mode, chunk in graph.astream(
                {"messages": conversation}, context=context, stream_mode=["custom", "values"]
            ):
                if mode == "custom":
                    yield chunk
                else:
                    final = chunk
            outcome.finish_reason = final.get("finish_reason", "stop")
            outcome.prompt_tokens = final.get("prompt_tokens", 0)
            outcome.completion_tokens = final.get("completion_tokens", 0)
            if graph_name == "team":
                outcome.citations = team_citations(final)
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
        finally:
            span.end()

    async def _finish(
        self,
        deltas: AsyncIterator[Delta],
        new_messages: list[ChatMessage],
        session_id: str,
        outcome: ChatOutcome,
        parent: Context | None,
    ) -> AsyncIterator[Delta]:
        """Pass the deltas through, then run output rails and store the turn (only if the answer completed)."""
        async for delta in deltas:
            if isinstance(delta, str):
                outcome.text += delta
            yield delta
        with _tracer.start_as_current_span("guardrails.output", context=parent) as span:
            verdict = await self.rails.check_output(outcome.text)
            span.set_attribute("chimera.rails.enabled", self.rails.enabled)
        if not verdict.allowed:
            outcome.finish_reason = "content_filter"
        turn = [m for m in new_messages if m.role != "system"]
        await self.sessions.append(session_id, [*turn, ChatMessage(role="assistant", content=outcome.text)])


async def _once(text: str, outcome: ChatOutcome) -> AsyncIterator[str]:
    yield text


async def _prepend(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    if first is not None:
        yield first
    async for text in rest:
        yield text
