"""The ReAct agent as a LangGraph `StateGraph`: ground (search the documents and the session's memory) → decide
(guided JSON) → act (tool) → … → answer (streamed).

`decide` asks the expert for a tool call under JSON-schema guided decoding, so even a 135M model emits a
parseable call. `act` runs it; a tool's error goes back to the model as an observation. The loop goes to the
answer once an observation is all there is to learn: the model chooses no tool, asks again for a call it has made
(answered from that call's observation, not run again), or a call brings back what an earlier one did. `answer`
writes the final reply with the tool results in view and streams it through LangGraph's custom stream; before
it, the same stream carries a `ProgressEvent` for each tool call and result, so callers can show what the agent
is doing.
"""

import asyncio
import json
import re
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite
from opentelemetry import trace

from chimera.agents.citations import CitationCheck, VerifiedAnswer, abstention
from chimera.agents.graph_kind import DECLINED, Finished, GraphKind, PendingToolCall, PendingWork, RunInputs
from chimera.agents.prompts import (
    NO_TOOL,
    answer_context,
    call_message,
    decision_instructions,
    decision_schema,
    observation_message,
    passages_text,
)
from chimera.agents.state import AgentContext, ProgressEvent, ReactState, ToolCall
from chimera.messages import ChatMessage, last_user_text
from chimera.models.expert import Completion, Expert, SamplingOverrides
from chimera.tools.base import Grounding, SourcedResult, Tool, ToolError
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.agents")
NO_NEW_PASSAGES = "no passages beyond those already found"


async def ground(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Look the question up before anything else, as a RAG assistant should: in the documents (`hybrid_search`)
    and, when the session's memory holds something, in what the session read (`recall`).

    Left to itself, a small model answers document questions from its weights (and invents a budget); a search
    it did not ask for costs ~15 ms. Only passages close to the question are kept, so a calculation or a chat
    question goes on without any. Each source that found something is one call of its tool, its passages
    numbered as citations (documents first).
    """
    sources = {name: tool for name, tool in runtime.context.tools.items() if isinstance(tool, Grounding)}
    question = last_user_text(state["messages"])
    if not sources or not question.strip():
        return {}
    with _tracer.start_as_current_span("agent.ground", context=runtime.context.trace_parent) as span:
        found = await asyncio.gather(*(_grounded(tool, question, span) for tool in sources.values()))
        calls: list[ToolCall] = []
        for name, result in zip(sources, found, strict=True):
            if result is not None:
                calls.append(_with_result(ToolCall(name, {"query": question[:300]}), result, earlier=cited(calls)))
        span.set_attribute("chimera.agent.grounding_passages", sum(len(c.citations) for c in calls))
        span.set_attribute("chimera.agent.grounded_in", ",".join(c.tool for c in calls))
    write = get_stream_writer()
    for call in calls:
        write(ProgressEvent("tool_result", call.tool, call.arguments, call.observation))
    return {"tool_calls": calls} if calls else {}


async def _grounded(source: Grounding, question: str, span: trace.Span) -> SourcedResult | None:
    """What one source has on the question; a source that cannot be read adds nothing (the run goes on)."""
    try:
        return await source.ground(question)
    except ToolError as e:
        span.add_event("chimera.agent.grounding_failed", {"error": str(e)})
        return None


async def decide(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Ask the expert which tool to call next, if any."""
    ctx = runtime.context
    calls = state.get("tool_calls", [])
    with _tracer.start_as_current_span("agent.decide", context=ctx.trace_parent) as span:
        history = [m for c in calls for m in (call_message(c), observation_message(c))]
        messages = [decision_instructions(ctx.tools), *state["messages"], *history]
        decision = await ctx.expert.complete(
            messages,
            SamplingOverrides(max_tokens=ctx.decision_max_tokens, temperature=0.0),
            json_schema=decision_schema(ctx.tools),
        )
        text, prompt_tokens, completion_tokens = decision.text, decision.prompt_tokens, decision.completion_tokens
        pending = parse_decision(text, known=set(ctx.tools))
        steps = state.get("steps", 0) + 1
        used = state.get("prompt_tokens", 0) + state.get("completion_tokens", 0) + prompt_tokens + completion_tokens
        stop = stop_reason(pending, calls, steps=steps, used_tokens=used, ctx=ctx)
        span.set_attribute("chimera.agent.decision", pending.tool if pending else NO_TOOL)
        span.set_attribute("chimera.agent.decision_text", text[:500])
        if stop is not None:
            span.set_attribute("chimera.agent.stop_reason", stop)
        if stop == "repeated_call" and pending is not None:  # answered from the earlier call's observation
            span.set_attribute("chimera.agent.repeat_of", next(i for i, c in enumerate(calls) if same_call(pending, c)))
    return {
        "pending": None if stop is not None else pending,
        "stop_reason": stop,
        "steps": steps,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


def stop_reason(
    pending: ToolCall | None, calls: list[ToolCall], *, steps: int, used_tokens: int, ctx: AgentContext
) -> str | None:
    """Why the loop ends after this decision, or None while it goes on to `act`.

    `answered`: the model chose no tool; `repeated_call`: it asked again for a call it has made (the `ground`
    step's searches included), whose observation is all the call would bring, so it is not run again and the
    answer has that observation in view; `step_budget` / `token_budget`: the run's bounds are spent, so it
    answers with what it has. (`act` ends the loop with `repeated_result`: see `nothing_new`.)
    """
    if pending is None:
        return "answered"
    if any(same_call(pending, c) for c in calls):
        return "repeated_call"
    if steps > ctx.max_steps:
        return "step_budget"
    if ctx.max_run_tokens is not None and used_tokens > ctx.max_run_tokens:
        return "token_budget"
    return None


_INNER_SPACE = re.compile(r"(?<=\S)[ \t]+")
_SPACE_AROUND_SYMBOL = re.compile(r" ?([^\w\s]) ?")


def same_call(a: ToolCall, b: ToolCall) -> bool:
    """Whether two calls ask the same: one tool, arguments equal up to spacing (`17*23` is `17 * 23`; line breaks
    and indentation count, as they do in code)."""
    return a.tool == b.tool and _canonical(a.arguments) == _canonical(b.arguments)


def _canonical(value: Any) -> Any:
    if isinstance(value, str):
        return _SPACE_AROUND_SYMBOL.sub(r"\1", _INNER_SPACE.sub(" ", value.strip()))
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def nothing_new(call: ToolCall, earlier: list[ToolCall]) -> bool:
    """Whether a call that ran brought back only what the run had: the observation of an earlier call of the same
    tool (`23 * 17` after `17 * 23`), or no passages beyond those already found."""
    if call.error is not None:
        return False  # an error is news: the model may correct the call
    if call.result == NO_NEW_PASSAGES:
        return True
    return any(c.tool == call.tool and c.error is None and c.observation == call.observation for c in earlier)


def parse_decision(text: str, *, known: set[str]) -> ToolCall | None:
    """The tool call in a decision, or None for "no tool". Unparseable or unknown calls count as no tool,
    except an unknown tool name, which comes back as a call whose error tells the model what exists."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None  # cut off by the token cap: answer with what we have
    if not isinstance(data, dict) or data.get("tool", NO_TOOL) == NO_TOOL:
        return None
    tool, arguments = str(data["tool"]), data.get("arguments")
    if not isinstance(arguments, dict):
        arguments = {}
    if tool not in known:
        return ToolCall(tool=tool, arguments=arguments, error=f"unknown tool; available: {', '.join(sorted(known))}")
    return ToolCall(tool=tool, arguments=arguments)


async def act(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Run the pending tool call; failures become the observation. A call that brought nothing new ends the loop
    (`repeated_result`)."""
    ctx = runtime.context
    call = state["pending"]
    earlier = state.get("tool_calls", [])
    assert call is not None, "route_after_decide sends only pending calls here"
    write = get_stream_writer()
    write(ProgressEvent("tool_call", call.tool, call.arguments))
    with _tracer.start_as_current_span(f"tool.{call.tool}", context=ctx.trace_parent) as span:
        span.set_attribute("chimera.tool.arguments", json.dumps(call.arguments))
        if call.error is None:
            try:
                result = await ctx.tools[call.tool].call(call.arguments)
            except ToolError as e:
                call = ToolCall(call.tool, call.arguments, error=str(e))
            else:
                call = _with_result(call, result, earlier=cited(earlier))
        span.set_attribute("chimera.tool.observation", call.observation)
        if call.error is not None:
            span.set_status(trace.StatusCode.ERROR, call.error)
        stop = "repeated_result" if nothing_new(call, earlier) else None
        if stop is not None:
            span.set_attribute("chimera.agent.stop_reason", stop)
    write(ProgressEvent("tool_result", call.tool, call.arguments, call.observation, error=call.error is not None))
    return {"tool_calls": [call], "pending": None, "stop_reason": stop}


def _with_result(call: ToolCall, result: str | SourcedResult, *, earlier: list[Citation]) -> ToolCall:
    """The call with its observation. Passages are numbered after the run's `earlier` citations; one the run
    already cites keeps its number and is not repeated."""
    if isinstance(result, str):
        return ToolCall(call.tool, call.arguments, result=result)
    known = {c.chunk_id for c in earlier}
    fresh = [p for p in result.passages if p.id not in known]
    citations = tuple(Citation.of(len(earlier) + 1 + i, p) for i, p in enumerate(fresh))
    if not citations:
        return ToolCall(call.tool, call.arguments, result=NO_NEW_PASSAGES)
    return ToolCall(call.tool, call.arguments, result=passages_text(citations), citations=citations)


def cited(calls: list[ToolCall]) -> list[Citation]:
    """Every passage the run's tool calls returned, in citation order."""
    return [c for call in calls for c in call.citations]


async def answer(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Write the final answer, streaming it as it is generated (held until checked when its citations are)."""
    ctx = runtime.context
    with _tracer.start_as_current_span("agent.answer", context=ctx.trace_parent):
        calls = state.get("tool_calls", [])
        searched = documents_only(calls, ctx.tools)
        if ctx.require_sources and searched == ():  # nothing found and nothing computed: say so, do not invent
            text = abstention(())
            get_stream_writer()(text)
            return {"answer": text, "citations": (), "finish_reason": "stop"}
        note = answer_context(calls)
        messages = [*state["messages"], *([note] if note else [])]
        question = last_user_text(state["messages"]) or None
        return await stream_answer(
            ctx.expert, messages, ctx.answer_sampling, cited(calls), ctx.citation_check,
            question=question, searched=searched,
        )  # fmt: skip


def documents_only(calls: list[ToolCall], tools: dict[str, Tool]) -> tuple[str, ...] | None:
    """The sources an answer must rest on alone, so that it may abstain: when every tool call was a search of the
    documents or the session's memory (grounding, `hybrid_search`, `recall`) or failed, the sources they found
    (none: the run found nothing); None when another tool (a calculator, code, Cypher) had a say."""
    said_nothing = (
        call.citations or call.error is not None or isinstance(tools.get(call.tool), Grounding) for call in calls
    )
    if not all(said_nothing):
        return None
    return tuple(dict.fromkeys(c.source for call in calls for c in call.citations))


async def stream_answer(
    expert: Expert,
    messages: list[ChatMessage],
    sampling: SamplingOverrides,
    sources: list[Citation],
    check: CitationCheck | None = None,
    *,
    question: str | None = None,
    searched: tuple[str, ...] | None = None,
) -> ReactState:
    """Generate an answer into the graph's custom stream, then list its sources; the answer's state update.

    The sources are listed by us, not left to the model: a small model cites unreliably. With a `check`, an
    answer written from passages is held until its citations are verified (`agents/citations.py`): markers are
    renumbered to agree with Sources, which lists only what the answer cites, and an answer the documents do not
    support becomes an abstention (`searched` set). Without one, Sources lists every passage retrieved.
    """
    write = get_stream_writer()
    done = Completion()
    held = check is not None and bool(sources)
    async for delta in expert.stream(messages, sampling):
        if done.take(delta) and not held:
            write(delta.text)
    text = done.text
    update: ReactState = {
        "finish_reason": done.finish_reason,
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
    }
    if check is not None and sources:
        verified = await check.verify(text, sources, question=question, searched=searched)
        write(verified.text)
        _record(verified)
        return {**update, "answer": verified.text, "citations": verified.citations}
    if sources:
        footer = "\n\nSources:\n" + "\n".join(c.label for c in sources)
        write(footer)
        text += footer
    return {**update, "answer": text, "citations": None}


def _record(verified: VerifiedAnswer) -> None:
    """What the check decided, on the current (answer) span."""
    span = trace.get_current_span()
    span.set_attribute("chimera.citations.claims", len(verified.claims))
    span.set_attribute("chimera.citations.supported", sum(c.supported for c in verified.claims))
    span.set_attribute("chimera.citations.cited", len(verified.citations))
    span.set_attribute("chimera.citations.max_relevance", round(verified.max_relevance, 3))
    span.set_attribute("chimera.citations.abstained", verified.abstained)


def route_after_decide(state: ReactState) -> Literal["act", "answer"]:
    return "act" if state.get("pending") is not None else "answer"


def route_after_act(state: ReactState) -> Literal["decide", "answer"]:
    return "answer" if state.get("stop_reason") is not None else "decide"


def build_react_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """Wire the ReAct graph; dependencies arrive per run as an `AgentContext`.

    Args:
        checkpointer: Saves the state after every step (None: no checkpoints of its own; run inside another
            graph's node, it checkpoints with that graph's).
    """
    graph = StateGraph(ReactState, context_schema=AgentContext)
    graph.add_node("ground", ground)
    graph.add_node("decide", decide)
    graph.add_node("act", act)
    graph.add_node("answer", answer)
    graph.add_edge(START, "ground")
    graph.add_edge("ground", "decide")
    graph.add_conditional_edges("decide", route_after_decide, ["act", "answer"])
    graph.add_conditional_edges("act", route_after_act, ["decide", "answer"])
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


class ReactKind(GraphKind):
    """The ReAct graph as `AgentRuns` drives it: `act` can be paused for approval of each tool call."""

    name = "react"
    model = "chimera-react"
    description = "The ReAct agent: grounds the question in the documents, calls tools, answers on the routed expert."
    nodes = ("ground", "decide", "act", "answer")

    def build(self, checkpointer: BaseCheckpointSaver | None) -> CompiledStateGraph:
        return build_react_graph(checkpointer)

    def reset(self) -> dict[str, Any]:
        return {"tool_calls": Overwrite([]), "pending": None, "steps": 0, "stop_reason": None, "citations": None}

    def pending(self, values: dict[str, Any]) -> tuple[PendingWork, ...]:
        call: ToolCall | None = values.get("pending")
        return (PendingToolCall(call.tool, call.arguments),) if call is not None else ()

    def decline(self, values: dict[str, Any], next_nodes: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
        call: ToolCall | None = values.get("pending")
        if call is None:
            return None
        return {"tool_calls": [ToolCall(call.tool, call.arguments, error=DECLINED)], "pending": None}, "act"

    def context(self, inputs: RunInputs) -> AgentContext:
        agent = inputs.agent
        return AgentContext(
            expert=inputs.experts[inputs.expert],
            tools={name: tool for name, tool in inputs.tools.items() if name in agent.react_tools},
            max_steps=agent.max_steps,
            decision_max_tokens=agent.decision_max_tokens,
            max_run_tokens=agent.max_run_tokens,
            answer_sampling=inputs.sampling_for(inputs.expert),
            trace_parent=inputs.trace_parent,
            citation_check=inputs.citation_check,
            require_sources=agent.require_sources,
        )

    def finished(self, final: dict[str, Any]) -> Finished:
        calls = final.get("tool_calls", [])
        attributes: dict[str, str | int] = {"chimera.agent.steps": final.get("steps", 0)}
        attributes["chimera.agent.tool_calls"] = len(calls)
        checked = final.get("citations")
        citations = tuple(cited(calls)) if checked is None else checked
        return Finished(citations, final.get("stop_reason"), attributes)
