"""The chat service: one request from validated messages to a stream of answer text.

model → path: `chimera` (= `chimera-react`) runs the ReAct agent on the routed expert; `chimera-team` runs the
supervisor team over all experts; `auto` routes to one expert without tools; `chimera-<expert>` names the
expert. Around it: session history from Redis, input/output rails, spans. The stream carries answer text and the
agent's `ProgressEvent`s and ends with one `ChatOutcome`.
"""

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agents.graph_kind import RunOutcome
from chimera.agents.runs import GRAPHS, AgentRuns, RunDelta, RunStatus
from chimera.agents.state import ProgressEvent
from chimera.errors import ChimeraError
from chimera.function_calls import FunctionCall, ToolOffer, UnsupportedToolSchemaError, calls_text, parse_calls
from chimera.guardrails.base import RailResult, Rails
from chimera.identity.audit import audit
from chimera.identity.principal import LOCAL, Principal
from chimera.memory.long_context.base import LongMemoryError
from chimera.memory.sessions.base import SessionNotFoundError, SessionStore, check_session_id
from chimera.messages import ChatMessage
from chimera.metrics import Metrics
from chimera.models.engine.base import EngineUnavailableError, UnsupportedSchemaError
from chimera.models.expert import Completion, Expert, SamplingOverrides
from chimera.models.router.base import ExpertLoad, RouteDecision, Router
from chimera.models.specs import EXPERT_NAMES, ExpertName
from chimera.sessions import owned
from chimera.tools.base import Scope
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.chat")
log = logging.getLogger(__name__)

AGENT_MODEL = "chimera"  # the default agent: the ReAct graph
AGENT_GRAPHS = {AGENT_MODEL: "react", **{kind.model: name for name, kind in GRAPHS.items()}}
AUTO_MODEL = "auto"
EXPERT_PREFIX = "chimera-"
REFUSAL = "I can't help with that request."


class UnknownModelError(ChimeraError):
    """The request named a model Chimera does not serve."""


class OverloadedError(EngineUnavailableError):
    """The expert's engine holds as many requests as it may queue; new ones are refused until it drains."""


def served_models() -> list[str]:
    """Every `model` value the chat endpoint accepts."""
    return [*AGENT_GRAPHS, AUTO_MODEL, *(EXPERT_PREFIX + e for e in EXPERT_NAMES)]


@dataclass(frozen=True)
class ChatRequest:
    """What the service needs of an API request, already validated."""

    model: str
    messages: list[ChatMessage]
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    session_id: str | None = None
    interrupt_before: tuple[str, ...] | None = None  # agent graphs: pause before these nodes (None: config's)
    principal: Principal = LOCAL  # who asks: owns the session, decides which documents the tools see
    json_schema: dict[str, Any] | None = None  # expert models: the answer is JSON of it (the API refuses it for agents)
    tools: ToolOffer | None = None  # expert models: the client's functions it may call instead of answering


@dataclass(frozen=True)
class ChatOutcome:
    """The last item of a chat's stream: the answer as sent, how it ended, and the run behind it."""

    text: str
    finish_reason: str
    run: RunOutcome  # usage, citations and stop reason; for agent runs also done or paused with pending work

    @property
    def prompt_tokens(self) -> int:
        return self.run.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.run.completion_tokens

    @property
    def citations(self) -> tuple[Citation, ...]:
        return self.run.citations

    @property
    def stop_reason(self) -> str | None:
        return self.run.stop_reason

    @property
    def tool_calls(self) -> tuple[FunctionCall, ...]:
        return self.run.tool_calls

    @property
    def paused(self) -> bool:
        return self.run.status == "paused"


ChatDelta: TypeAlias = str | ProgressEvent | ChatOutcome


@dataclass(frozen=True)
class ChatStream:
    """A started chat: what the response headers need, then the stream (text and the agent's progress events,
    then one `ChatOutcome`)."""

    model: str
    decision: RouteDecision
    session_id: str
    guardrail: str | None  # the input rail that refused the request (x-chimera-guardrail)
    _deltas: AsyncIterator[ChatDelta]

    def __aiter__(self) -> AsyncIterator[ChatDelta]:
        return self._deltas

    def deltas(self) -> AsyncGenerator[ChatDelta, None]:
        """The stream as the generator it is (`aclose()` stops the run behind it)."""
        assert isinstance(self._deltas, AsyncGenerator)
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
        max_queue_factor: float | None = None,
        unnamed_session_ttl_s: int | None = None,
        metrics: Metrics | None = None,
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
        self.max_queue_factor = max_queue_factor
        self.unnamed_session_ttl_s = unnamed_session_ttl_s  # sessions the server named, until continued
        self._in_flight: Counter[ExpertName] = Counter()  # this process's requests per expert (the poll lags)
        self.metrics = metrics or Metrics(served_models())  # router decisions and rail refusals are counted here

    def resolve(self, model: str) -> ExpertName | None:
        """The expert a model name fixes, None when the router decides.

        Raises:
            UnknownModelError: for any name outside `served_models()`.
        """
        if model in AGENT_GRAPHS or model == AUTO_MODEL:
            return None
        name = model.removeprefix(EXPERT_PREFIX)
        if model.startswith(EXPERT_PREFIX) and name in EXPERT_NAMES:
            return name
        raise UnknownModelError(f"The model `{model}` does not exist. Available: {', '.join(served_models())}")

    async def start(self, request: ChatRequest, *, parent: Context | None = None) -> ChatStream:
        """Prepare the request and wait for the first delta, so that errors raise before any byte is sent.

        Raises:
            UnknownModelError, InvalidSessionIdError, SessionError, EngineError, RunError: mapped to HTTP by the API.
        """
        fixed = self.resolve(request.model)
        principal = request.principal
        session_id = check_session_id(request.session_id) if request.session_id else uuid.uuid4().hex
        ttl = None if request.session_id else self.unnamed_session_ttl_s
        if not await self.sessions.claim(session_id, principal.id, ttl_s=ttl):
            audit("foreign_session", principal.id, context=parent, session=session_id, action="chat")
            raise SessionNotFoundError(f"no session {session_id}")
        history = await self.sessions.load(session_id) if request.session_id else []
        conversation = [*history, *request.messages]

        with _tracer.start_as_current_span("guardrails.input", context=parent) as span:
            verdict = await self.rails.check_input(conversation)
            span.set_attributes({"chimera.rails.enabled": self.rails.enabled, "chimera.rails.allowed": verdict.allowed})
            span.set_attributes(_rail_attributes(verdict))
        self.metrics.railed("input", verdict)
        with _tracer.start_as_current_span("router.route", context=parent) as span:
            decision = await self._route(conversation, fixed)
            span.set_attributes(decision.as_attributes())
        self.metrics.routed(decision)
        self._admit(decision.expert)

        guardrail = None if verdict.allowed else verdict.rail or "input"
        deltas: AsyncIterator[RunDelta]
        if guardrail is not None:
            deltas = _refusal()
        else:
            conversation = verdict.messages or conversation
            graph = AGENT_GRAPHS.get(request.model)
            if graph is not None:
                scope = Scope(principal.search_filters, whole_graph=principal.is_admin)
                settings = self.runs.settings(graph, decision.expert, request.sampling, request.interrupt_before, scope)
                deltas = self.runs.run(settings, conversation, session_id, parent, ttl_s=ttl)
            else:
                deltas = _expert(self.experts[decision.expert], conversation, request, parent)
        # the session keeps the new turn as the model saw it (PII masked by the input rails)
        new_turn = None if guardrail else conversation[len(history) :]
        named = request.session_id is not None
        finished = self._finish(deltas, new_turn, session_id, decision.expert, parent, named=named)
        first = await anext(finished, None)
        return ChatStream(request.model, decision, session_id, guardrail, _prepend(first, finished))

    def _admit(self, expert: ExpertName) -> None:
        """Fail fast rather than queue without end: an expert without a live replica (a call would hang until
        Serve replaces it), or one holding `max_queue_factor` times its capacity, is unavailable (503)."""
        load = self.load().get(expert)
        if load is None:
            return
        if not load.healthy:
            raise EngineUnavailableError(f"the {expert} expert has no live replica; try again shortly")
        held = max(load.ongoing, self._in_flight[expert])
        if self.max_queue_factor is not None and held >= self.max_queue_factor * load.capacity:
            raise OverloadedError(f"the {expert} expert is holding {held} requests; try again shortly")

    async def _route(self, conversation: list[ChatMessage], fixed: ExpertName | None) -> RouteDecision:
        if fixed is not None:
            return RouteDecision(expert=fixed, confidence=1.0, explicit=True)
        if self.router.blocking:  # a transformer forward pass: keep the event loop serving other requests
            return await asyncio.to_thread(self.router.route, conversation, load=self.load())
        return self.router.route(conversation, load=self.load())

    async def resume(
        self, session_id: str, principal: Principal, *, approve: bool, parent: Context | None = None
    ) -> ChatStream:
        """Continue the session's paused (or killed) agent run; `approve=False` declines the pending work.

        Raises:
            InvalidSessionIdError, SessionNotFoundError, NothingToResumeError: mapped to HTTP by the API.
        """
        await owned(self.sessions, session_id, principal, "resume", parent)
        audit("run_resumed", principal.id, context=parent, session=session_id, approve=approve)
        settings, run = await self.runs.resume(session_id, approve=approve, parent=parent)
        finished = self._finish(run, [], session_id, settings.expert, parent)
        first = await anext(finished, None)
        decision = RouteDecision(expert=settings.expert, confidence=1.0, explicit=True)
        return ChatStream(settings.kind.model, decision, session_id, None, _prepend(first, finished))

    async def run_status(self, session_id: str, principal: Principal) -> RunStatus:
        """The session's last agent run: none, done, or paused (awaiting approval, or cut short).

        Raises:
            InvalidSessionIdError, SessionNotFoundError: mapped to HTTP by the API.
        """
        return await self.runs.status(await owned(self.sessions, session_id, principal, "run_status"))

    async def _finish(
        self,
        deltas: AsyncIterator[RunDelta],
        new_messages: list[ChatMessage] | None,
        session_id: str,
        expert: ExpertName,
        parent: Context | None,
        *,
        named: bool = True,
    ) -> AsyncIterator[ChatDelta]:
        """Pass the deltas through (answer text PII-masked as it streams), run the output rails, store the turn,
        and end with the `ChatOutcome`.

        `new_messages` is the turn's user side (None: a refused request, which leaves no turn in the session;
        empty: a resumed run, whose question comes with its outcome); `named`: the client named the session. A run
        paused for approval ends with a note saying how to resume it; its turn is stored when it answers.
        """
        masking = self.rails.output_stream()  # PII masked as the answer streams, split entities included
        text, run = "", RunOutcome()
        async for delta in _counted(deltas, self._in_flight, expert):
            if isinstance(delta, RunOutcome):
                run = delta
                continue
            if isinstance(delta, str):
                delta = masking.push(delta)
                text += delta
                if not delta:
                    continue
            yield delta
        if tail := masking.flush():
            text += tail
            yield tail
        finish_reason = run.finish_reason
        if new_messages is None:
            finish_reason = "content_filter"
        elif run.status == "paused":
            note = paused_note(run, session_id)
            text += note
            yield note
        else:
            with _tracer.start_as_current_span("guardrails.output", context=parent) as span:
                verdict = await self.rails.check_output(text)
                span.set_attributes(
                    {"chimera.rails.enabled": self.rails.enabled, "chimera.rails.allowed": verdict.allowed}
                )
                span.set_attributes(_rail_attributes(verdict))
            self.metrics.railed("output", verdict)
            if not verdict.allowed:
                finish_reason = "content_filter"
            asked = new_messages or ([run.question] if run.question else [])
            said = calls_text(run.tool_calls) if run.tool_calls else text
            turn = [*(m for m in asked if m.role != "system"), ChatMessage(role="assistant", content=said)]
            # a one-shot request (the server named its session) leaves its turn for a short while only, and
            # nothing in the long-context memory; a client that continues the session gives it the full expiry
            await self.sessions.append(session_id, turn, ttl_s=None if named else self.unnamed_session_ttl_s)
            if self.read_after_turn and named:
                self._read_later(session_id, turn)
        yield ChatOutcome(text, finish_reason, run)

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
    work = "; ".join(p.describe() for p in run.pending)
    return (
        f"[paused for approval before {', '.join(run.next)}: {work}. "
        f'POST /v1/sessions/{session_id}/resume with {{"approve": true}} to go on or false to decline.]'
    )


async def _expert(
    expert: Expert, conversation: list[ChatMessage], request: ChatRequest, parent: Context | None
) -> AsyncIterator[RunDelta]:
    """One expert's answer to `conversation`, with the request's sampling and JSON schema; ends with its usage.

    With client tools the expert first decides under the tools' schema: calls end the answer (finish reason
    `tool_calls`); none (`auto` only) lets it answer in free text, as without tools.
    """
    spent = Completion()  # the decision's usage, when there is one
    if request.tools is not None:
        prompt = [*conversation, request.tools.instructions()]
        try:
            spent = await expert.complete(prompt, request.sampling, json_schema=request.tools.schema(), parent=parent)
        except UnsupportedSchemaError as e:
            raise UnsupportedToolSchemaError(f"the tools' parameter schemas: {e}") from e
        try:
            calls = parse_calls(spent.text)
        except ValueError:  # cut short by max_tokens: no call to hand over
            yield RunOutcome(finish_reason="length", prompt_tokens=spent.prompt_tokens,
                             completion_tokens=spent.completion_tokens)  # fmt: skip
            return
        if calls:
            yield RunOutcome(finish_reason="tool_calls", prompt_tokens=spent.prompt_tokens,
                             completion_tokens=spent.completion_tokens, tool_calls=calls)  # fmt: skip
            return
    done = Completion()
    stream = expert.stream(conversation, request.sampling, json_schema=request.json_schema, parent=parent)
    async for delta in stream:
        if done.take(delta):
            yield delta.text
    yield RunOutcome(
        finish_reason=done.finish_reason,
        prompt_tokens=spent.prompt_tokens + done.prompt_tokens,
        completion_tokens=spent.completion_tokens + done.completion_tokens,
    )


async def _refusal() -> AsyncIterator[RunDelta]:
    yield REFUSAL
    yield RunOutcome(finish_reason="content_filter")


def _rail_attributes(verdict: RailResult) -> dict[str, str | float]:
    """Span attributes naming the rail that decided, and its score."""
    attributes: dict[str, str | float] = {"chimera.rails.rail": verdict.rail} if verdict.rail else {}
    if verdict.score is not None:
        attributes["chimera.rails.score"] = round(verdict.score, 4)
    return attributes


async def _counted(
    deltas: AsyncIterator[RunDelta], counter: Counter[ExpertName], expert: ExpertName
) -> AsyncIterator[RunDelta]:
    """`deltas`, counted in `counter[expert]` while they flow."""
    counter[expert] += 1
    try:
        async for delta in deltas:
            yield delta
    finally:
        counter[expert] -= 1


async def _prepend(first: ChatDelta | None, rest: AsyncIterator[ChatDelta]) -> AsyncIterator[ChatDelta]:
    if first is not None:
        yield first
    async for delta in rest:
        yield delta
