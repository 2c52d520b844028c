"""The ReAct agent as a LangGraph `StateGraph`: ground (search the documents) → decide (guided JSON) → act (tool)
→ … → answer (streamed).

`decide` asks the expert for a tool call under JSON-schema guided decoding, so even a 135M model emits a
parseable call. `act` runs it; a tool's error goes back to the model as an observation. `answer` writes the
final reply with the tool results in view and streams it through LangGraph's custom stream; before it, the same
stream carries a `ProgressEvent` for each tool call and result, so callers can show what the agent is doing.
"""

import json
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite
from opentelemetry import trace

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
from chimera.messages import ChatMessage
from chimera.models.expert import Completion, Expert, SamplingOverrides
from chimera.tools.base import Grounding, SourcedResult, ToolError
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.agents")


async def ground(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Search the documents for the question before anything else, as a RAG assistant should.

    Left to itself, a small model answers document questions from its weights (and invents a budget); a search
    it did not ask for costs ~15 ms. Only passages close to the question are kept, so a calculation or a chat
    question goes on without any.
    """
    search = next((t for t in runtime.context.tools.values() if isinstance(t, Grounding)), None)
    question = next((m.content for m in reversed(state["messages"]) if m.role == "user"), "")
    if search is None or not question.strip():
        return {}
    with _tracer.start_as_current_span("agent.ground", context=runtime.context.trace_parent) as span:
        found = await search.ground(question)
        span.set_attribute("chimera.agent.grounding_passages", len(found.passages) if found else 0)
    if found is None:
        return {}
    name = next(n for n, t in runtime.context.tools.items() if t is search)
    call = _with_result(ToolCall(name, {"query": question[:300]}), found, earlier=[])
    get_stream_writer()(ProgressEvent("tool_result", call.tool, call.arguments, call.observation))
    return {"tool_calls": [call]}


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

    `answered`: the model chose no tool; `repeated_call`: the same call again would only repeat its observation;
    `step_budget` / `token_budget`: the run's bounds are spent, so it answers with what it has.
    """
    if pending is None:
        return "answered"
    if any(pending.tool == c.tool and pending.arguments == c.arguments for c in calls):
        return "repeated_call"
    if steps > ctx.max_steps:
        return "step_budget"
    if ctx.max_run_tokens is not None and used_tokens > ctx.max_run_tokens:
        return "token_budget"
    return None


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
    """Run the pending tool call; failures become the observation."""
    ctx = runtime.context
    call = state["pending"]
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
                call = _with_result(call, result, earlier=cited(state.get("tool_calls", [])))
        span.set_attribute("chimera.tool.observation", call.observation)
        if call.error is not None:
            span.set_status(trace.StatusCode.ERROR, call.error)
    write(ProgressEvent("tool_result", call.tool, call.arguments, call.observation, error=call.error is not None))
    return {"tool_calls": [call], "pending": None}


def _with_result(call: ToolCall, result: str | SourcedResult, *, earlier: list[Citation]) -> ToolCall:
    """The call with its observation. Passages are numbered after the run's `earlier` citations; one the run
    already cites keeps its number and is not repeated."""
    if isinstance(result, str):
        return ToolCall(call.tool, call.arguments, result=result)
    known = {c.chunk_id for c in earlier}
    fresh = [p for p in result.passages if p.id not in known]
    citations = tuple(Citation.of(len(earlier) + 1 + i, p) for i, p in enumerate(fresh))
    if not citations:
        return ToolCall(call.tool, call.arguments, result="no passages beyond those already found")
    return ToolCall(call.tool, call.arguments, result=passages_text(citations), citations=citations)


def cited(calls: list[ToolCall]) -> list[Citation]:
    """Every passage the run's tool calls returned, in citation order."""
    return [c for call in calls for c in call.citations]


async def answer(state: ReactState, runtime: Runtime[AgentContext]) -> ReactState:
    """Write the final answer, streaming it as it is generated."""
    ctx = runtime.context
    with _tracer.start_as_current_span("agent.answer", context=ctx.trace_parent):
        note = answer_context(state.get("tool_calls", []))
        messages = [*state["messages"], *([note] if note else [])]
        return await stream_answer(ctx.expert, messages, ctx.answer_sampling, cited(state.get("tool_calls", [])))


async def stream_answer(
    expert: Expert, messages: list[ChatMessage], sampling: SamplingOverrides, sources: list[Citation]
) -> ReactState:
    """Generate an answer into the graph's custom stream, then list its sources; the answer's state update.

    The sources are listed by us, not left to the model: a small model cites unreliably.
    """
    write = get_stream_writer()
    done = Completion()
    async for delta in expert.stream(messages, sampling):
        if done.take(delta):
            write(delta.text)
    text = done.text
    if sources:
        footer = "\n\nSources:\n" + "\n".join(c.label for c in sources)
        write(footer)
        text += footer
    return {
        "answer": text,
        "finish_reason": done.finish_reason,
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
    }


def route_after_decide(state: ReactState) -> Literal["act", "answer"]:
    return "act" if state.get("pending") is not None else "answer"


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
    graph.add_edge("act", "decide")
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
        return {"tool_calls": Overwrite([]), "pending": None, "steps": 0, "stop_reason": None}

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
            answer_sampling=inputs.answer_sampling,
            trace_parent=inputs.trace_parent,
        )

    def finished(self, final: dict[str, Any]) -> Finished:
        calls = final.get("tool_calls", [])
        attributes: dict[str, str | int] = {"chimera.agent.steps": final.get("steps", 0)}
        attributes["chimera.agent.tool_calls"] = len(calls)
        return Finished(tuple(cited(calls)), final.get("stop_reason"), attributes)
