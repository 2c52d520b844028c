"""The chat service: one request from validated messages to a stream of answer text.

model → path: `chimera` (= `chimera-react`) runs the ReAct agent on the routed expert; `chimera-team` runs the
supervisor team over all experts; `auto` routes to one expert without tools;
`chimera-<expert>` names the expert. Around it: session history from Redis, input/output rails, spans.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agent_runs import AgentRuns, Delta, GraphName, RunOutcome, RunStatus
from chimera.errors import ChimeraError
from chimera.guardrails.base import RailResult, Rails
from chimera.memory.long_context.base import LongMemoryError
from chimera.memory.sessions.base import SessionStore, check_session_id
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.router.base import ExpertLoad, RouteDecision, Router
from chimera.models.specs import EXPERT_NAMES, ExpertName
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.chat")
log = logging.getLogger(__name__)

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
    interrupt_before: tuple[str, ...] | None = None  # agent graphs: pause before these nodes (None: config's)


@dataclass
class ChatOutcome:
    """How the answer ended; filled in as the stream finishes."""

    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    citations: list[Citation] = field(default_factory=list)  # passages the agent's answer drew on
    stop_reason: str | None = None  # why the agent's tool loop ended (answered, repeated_call, step/token budget)
    run: RunOutcome = field(default_factory=RunOutcome)  # agent runs: done, or paused awaiting approval
    guardrail: str | None = None  # the input rail that refused the request (x-chimera-guardrail)

    def took(self, run: RunOutcome) -> None:
        """Take the finished (or paused) agent run's figures."""
        self.finish_reason, self.stop_reason = run.finish_reason, run.stop_reason
        self.prompt_tokens, self.completion_tokens = run.prompt_tokens, run.completion_tokens
        self.citations = run.citations


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
        runs: AgentRuns,
        load: Callable[[], Mapping[ExpertName, ExpertLoad]] | None = None,
        read_after_turn: bool = True,
    ) -> None:
        self.experts = experts
        self.router = router
        self.sessions = sessions
        self.rails = rails
        self.runs = runs
        self.load = load or dict
        self.memory = runs.memory
        self.read_after_turn = read_after_turn and runs.memory is not None
        self._reads: set[asyncio.Task[None]] = set()  # background memory reads of finished turns

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
            span.set_attributes(_rail_attributes(verdict))
        with _tracer.start_as_current_span("router.route", context=parent) as span:
            if fixed is not None:
                decision = RouteDecision(expert=fixed, confidence=1.0, explicit=True)
            else:
                decision = self.router.route(conversation, load=self.load())
            span.set_attributes(decision.as_attributes())

        if not verdict.allowed:
            outcome.finish_reason, outcome.guardrail = "content_filter", verdict.rail or "input"
            deltas = _once(REFUSAL, outcome)
        else:
            conversation = verdict.messages or conversation
            expert = self.experts[decision.expert]
            if request.model in AGENT_MODELS:
                graph: GraphName = "team" if request.model == TEAM_MODEL else "react"
                settings = self.runs.settings(graph, decision.expert, request.sampling, request.interrupt_before)
                deltas = _agent(self.runs.run(settings, conversation, session_id, outcome.run, parent), outcome)
            else:
                deltas = self._run_expert(expert, conversation, request.sampling, outcome, parent)
        # the session keeps the new turn as the model saw it (PII masked by the input rails)
        deltas = self._finish(deltas, conversation[len(history) :], session_id, outcome, parent)
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

    async def resume(self, session_id: str, *, approve: bool, parent: Context | None = None) -> ChatStream:
        """Continue the session's paused (or killed) agent run; `approve=False` declines the pending work.

        Raises:
            InvalidSessionIdError, NothingToResumeError: mapped to HTTP by the API.
        """
        check_session_id(session_id)
        outcome = ChatOutcome()
        settings, run = await self.runs.resume(session_id, approve=approve, outcome=outcome.run, parent=parent)
        question = [outcome.run.question] if outcome.run.question else []
        deltas = self._finish(_agent(run, outcome), question, session_id, outcome, parent)
        first = await anext(deltas, None)
        decision = RouteDecision(expert=settings.expert, confidence=1.0, explicit=True)
        model = TEAM_MODEL if settings.graph == "team" else REACT_MODEL
        return ChatStream(model, decision, session_id, outcome, _prepend(first, deltas))

    async def run_status(self, session_id: str) -> RunStatus:
        """The session's last agent run: none, done, or paused (awaiting approval, or cut short)."""
        return await self.runs.status(check_session_id(session_id))

    async def _finish(
        self,
        deltas: AsyncIterator[Delta],
        new_messages: list[ChatMessage],
        session_id: str,
        outcome: ChatOutcome,
        parent: Context | None,
    ) -> AsyncIterator[Delta]:
        """Pass the deltas through, then run output rails and store the turn (only if the answer completed).

        A run paused for approval ends with a note saying how to resume it; its turn is stored when it answers.
        """
        masking = self.rails.output_stream()  # PII masked as the answer streams, split entities included
        async for delta in deltas:
            if isinstance(delta, str):
                delta = masking.push(delta)
                outcome.text += delta
                if not delta:
                    continue
            yield delta
        if tail := masking.flush():
            outcome.text += tail
            yield tail
        if outcome.guardrail:  # a refused request leaves no turn in the session
            return
        if outcome.run.status == "paused":
            note = paused_note(outcome.run, session_id)
            outcome.text += note
            yield note
            return
        with _tracer.start_as_current_span("guardrails.output", context=parent) as span:
            verdict = await self.rails.check_output(outcome.text)
            span.set_attribute("chimera.rails.enabled", self.rails.enabled)
            span.set_attributes(_rail_attributes(verdict))
        if not verdict.allowed:
            outcome.finish_reason = "content_filter"
        turn = [m for m in new_messages if m.role != "system"]
        answer = ChatMessage(role="assistant", content=outcome.text)
        await self.sessions.append(session_id, [*turn, answer])
        if self.read_after_turn:
            self._read_later(session_id, [*turn, answer])

    def _read_later(self, session_id: str, turn: list[ChatMessage]) -> None:
        """Read a finished turn into the session's long-context memory, off the request's path."""
        assert self.memory is not None
        text = "\n".join(f"{m.role}: {m.content}" for m in turn)
        task = asyncio.create_task(self._read(session_id, text))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read(self, session_id: str, text: str) -> None:
        assert self.memory is not None
        try:
            await self.memory.read(session_id, text)
        except LongMemoryError as e:  # the answer is delivered and stored; memory catches up on the next turn
            log.warning("memory read of session %s failed: %s", session_id, e)

    async def drain(self) -> None:
        """Wait for background memory reads (at shutdown, and in tests)."""
        while self._reads:
            await asyncio.gather(*list(self._reads), return_exceptions=True)


def paused_note(run: RunOutcome, session_id: str) -> str:
    """What a paused run says to a plain OpenAI client: what it would do, and how to go on."""
    work = "; ".join(
        f"{p['tool']} {json.dumps(p['arguments'])}" if "tool" in p else f"{p['agent']}: {p['task']}"
        for p in run.pending
    )
    return (
        f"[paused for approval before {', '.join(run.next)}: {work}. "
        f'POST /v1/sessions/{session_id}/resume with {{"approve": true}} to go on or false to decline.]'
    )


async def _agent(run: AsyncIterator[Delta], outcome: ChatOutcome) -> AsyncIterator[Delta]:
    """An agent run's deltas; when they end, the outcome takes the run's figures."""
    async for delta in run:
        yield delta
    outcome.took(outcome.run)


def _rail_attributes(verdict: RailResult) -> dict[str, str | float]:
    """Span attributes naming the rail that decided, and its score."""
    attributes: dict[str, str | float] = {"chimera.rails.rail": verdict.rail} if verdict.rail else {}
    if verdict.score is not None:
        attributes["chimera.rails.score"] = round(verdict.score, 4)
    return attributes


async def _once(text: str, outcome: ChatOutcome) -> AsyncIterator[str]:
    yield text


async def _prepend(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    if first is not None:
        yield first
    async for text in rest:
        yield text
