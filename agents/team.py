"""The supervisor team (`chimera-team`) as a LangGraph `StateGraph`: plan → specialists in parallel → synthesize.

The supervisor splits the question into at most `max_tasks` sub-tasks, each for one specialist: `math` (the
math expert with the calculator), `code` (the code expert with `run_python`), `research` (the text expert with
`hybrid_search` / `graph_query` / `recall`). Independent sub-tasks run at once through LangGraph's `Send`;
each specialist is the ReAct graph with its own expert and tools and its own step budget. The synthesizer
writes the answer from their results and keeps their citations. A plan that cannot be parsed becomes one
research task, so the team always answers.
"""

import json
import operator
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send
from opentelemetry import trace
from opentelemetry.context import Context

from chimera.agents.citations import CitationCheck
from chimera.agents.graph_kind import DECLINED, Finished, GraphKind, PendingSubTask, PendingWork, RunInputs
from chimera.agents.react import build_react_graph, cited, stream_answer
from chimera.agents.state import AgentContext
from chimera.messages import ChatMessage, last_user_text
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import ExpertName
from chimera.tools.base import Tool
from chimera.tools.search.types import Citation

_tracer = trace.get_tracer("chimera.agents")

Specialist = Literal["math", "code", "research"]
SPECIALISTS: dict[Specialist, tuple[ExpertName, tuple[str, ...]]] = {
    "math": ("math", ("calculator",)),
    "code": ("code", ("run_python",)),
    "research": ("text", ("hybrid_search", "graph_query", "recall")),
}


@dataclass(frozen=True)
class SubTask:
    agent: Specialist
    task: str


@dataclass(frozen=True)
class SubResult:
    agent: Specialist
    task: str
    answer: str
    citations: tuple[Citation, ...] = ()
    steps: int = 0
    stop_reason: str | None = None  # why the specialist's tool loop ended (see `react.stop_reason`)


class TeamState(TypedDict, total=False):
    messages: list[ChatMessage]  # the conversation to answer, set once
    plan: list[SubTask]
    results: Annotated[list[SubResult], operator.add]  # one per finished sub-task, in completion order
    answer: str
    citations: tuple[Citation, ...] | None  # the answer's sources once checked (None: not checked)
    finish_reason: str
    prompt_tokens: Annotated[int, operator.add]
    completion_tokens: Annotated[int, operator.add]


class SpecialistInput(TypedDict):
    task: SubTask


@dataclass(frozen=True)
class TeamContext:
    """Per-run dependencies: the experts, every tool, and the team's bounds."""

    experts: dict[ExpertName, Expert]
    tools: dict[str, Tool]
    max_tasks: int = 3
    specialist_steps: int = 3
    decision_max_tokens: int = 96
    max_run_tokens: int | None = None  # each specialist's tool-loop token budget
    answer_sampling: dict[ExpertName, SamplingOverrides] = field(default_factory=dict)  # absent: expert's defaults
    trace_parent: Context | None = None
    citation_check: CitationCheck | None = None  # checks the synthesized answer's citations (None: listed as found)

    def sampling_for(self, expert: ExpertName) -> SamplingOverrides:
        return self.answer_sampling.get(expert, SamplingOverrides())


def plan_schema(max_tasks: int) -> dict[str, Any]:
    """JSON schema of the supervisor's plan: 1..max_tasks sub-tasks, each for one specialist."""
    task = {
        "type": "object",
        "properties": {"agent": {"enum": list(SPECIALISTS)}, "task": {"type": "string", "maxLength": 300}},
        "required": ["agent", "task"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": task, "minItems": 1, "maxItems": max_tasks}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


PLAN_INSTRUCTIONS = (
    "You are the supervisor of a team. Split the user's request into at most {n} independent sub-tasks and give "
    "each to one agent: math (calculations), code (writing and running Python), research (the company's "
    "documents). Write each task as a full sentence in the user's words. "
    'Reply with JSON only: {{"tasks": [{{"agent": "math", "task": "..."}}]}}'
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def parse_plan(text: str, question: str, max_tasks: int) -> list[SubTask]:
    """The sub-tasks of a plan; anything unparseable becomes one research task on the whole question.

    A task whose text says nothing a person could approve (a small model writes `"1"`, `"2"`) is the whole
    question for its agent; a sub-task planned twice runs once.
    """
    try:
        data = json.loads(text)
        planned = [(t["agent"], str(t["task"]).strip()) for t in data["tasks"] if t["agent"] in SPECIALISTS]
    except (json.JSONDecodeError, KeyError, TypeError):
        planned = []
    tasks = [SubTask(agent, task if says_something(task) else question) for agent, task in planned if task]
    return list(dict.fromkeys(tasks))[:max_tasks] or [SubTask("research", question)]


def says_something(task: str) -> bool:
    """Whether a sub-task's text reads as a task: two words or more, one of them a word of letters."""
    return len(task.split()) >= 2 and _WORD.search(task) is not None


async def plan(state: TeamState, runtime: Runtime[TeamContext]) -> TeamState:
    """The supervisor (chat expert) splits the request into sub-tasks under guided JSON."""
    ctx = runtime.context
    question = last_user_text(state["messages"])
    with _tracer.start_as_current_span("team.plan", context=ctx.trace_parent) as span:
        instructions = ChatMessage(role="system", content=PLAN_INSTRUCTIONS.format(n=ctx.max_tasks))
        planned = await ctx.experts["chat"].complete(
            [instructions, *state["messages"]],
            SamplingOverrides(max_tokens=ctx.decision_max_tokens * ctx.max_tasks, temperature=0.0),
            json_schema=plan_schema(ctx.max_tasks),
        )
        tasks = parse_plan(planned.text, question, ctx.max_tasks)
        span.set_attribute("chimera.team.plan", json.dumps([t.__dict__ for t in tasks]))
    return {"plan": tasks, "prompt_tokens": planned.prompt_tokens, "completion_tokens": planned.completion_tokens}


def dispatch(state: TeamState) -> list[Send]:
    """One `specialist` run per sub-task, all at once."""
    return [Send("specialist", SpecialistInput(task=t)) for t in state["plan"]]


async def specialist(state: SpecialistInput, runtime: Runtime[TeamContext]) -> TeamState:
    """Run one sub-task on the ReAct graph with the specialist's expert and tools."""
    ctx = runtime.context
    task = state["task"]
    expert_name, tool_names = SPECIALISTS[task.agent]
    with _tracer.start_as_current_span(f"team.{task.agent}", context=ctx.trace_parent) as span:
        span.set_attribute("chimera.team.task", task.task)
        context = AgentContext(
            expert=ctx.experts[expert_name],
            tools={n: ctx.tools[n] for n in tool_names if n in ctx.tools and ctx.tools[n].available()},
            max_steps=ctx.specialist_steps,
            decision_max_tokens=ctx.decision_max_tokens,
            max_run_tokens=ctx.max_run_tokens,
            answer_sampling=ctx.sampling_for(expert_name),
            trace_parent=trace.set_span_in_context(span),
        )
        final = await build_react_graph().ainvoke(
            {"messages": [ChatMessage(role="user", content=task.task)]}, context=context
        )
    result = SubResult(
        task.agent,
        task.task,
        _without_sources(final.get("answer", "")),
        tuple(cited(final.get("tool_calls", []))),
        final.get("steps", 0),
        final.get("stop_reason"),
    )
    return {
        "results": [result],
        "prompt_tokens": final.get("prompt_tokens", 0),
        "completion_tokens": final.get("completion_tokens", 0),
    }


async def synthesize(state: TeamState, runtime: Runtime[TeamContext]) -> TeamState:
    """Write the final answer from the specialists' results (streamed), with their sources renumbered."""
    ctx = runtime.context
    results = sorted(state.get("results", []), key=lambda r: state["plan"].index(SubTask(r.agent, r.task)))
    findings = "\n".join(f"- {r.agent} ({r.task}): {r.answer.strip()}" for r in results)
    note = ChatMessage(role="user", content=f"Findings of your team:\n{findings}\nNow answer my request.")
    with _tracer.start_as_current_span("team.synthesize", context=ctx.trace_parent):
        sources = _renumbered([c for r in results for c in r.citations])
        question = last_user_text(state["messages"]) or None
        searched = tuple(dict.fromkeys(c.source for c in sources)) if all(r.citations for r in results) else None
        return await stream_answer(
            ctx.experts["chat"], [*state["messages"], note], ctx.sampling_for("chat"), sources,
            ctx.citation_check, question=question, searched=searched if results else None,
        )  # fmt: skip


def _without_sources(answer: str) -> str:
    """A specialist's answer without its own source list (the synthesizer writes one for the team)."""
    return answer.split("\n\nSources:\n", 1)[0]


def _renumbered(citations: list[Citation]) -> list[Citation]:
    """Citations of several specialists as one list: each chunk once, numbered from 1."""
    seen: dict[str, Citation] = {}
    for c in citations:
        if c.chunk_id not in seen:
            seen[c.chunk_id] = Citation(len(seen) + 1, c.chunk_id, c.source, c.page, c.heading_path, c.text)
    return list(seen.values())


def team_citations(state: TeamState) -> list[Citation]:
    """The sources of a finished team run, as numbered in its answer."""
    return _renumbered([c for r in state.get("results", []) for c in r.citations])


def team_stop_reason(state: TeamState) -> str:
    """`answered` when every specialist answered; else the first other reason, as `<agent>:<reason>`."""
    for r in state.get("results", []):
        if r.stop_reason not in (None, "answered"):
            return f"{r.agent}:{r.stop_reason}"
    return "answered"


def build_team_graph(
    checkpointer: BaseCheckpointSaver | None = None,
) -> "CompiledStateGraph[TeamState, TeamContext, TeamState, TeamState]":
    """Wire the team graph; dependencies arrive per run as a `TeamContext`.

    Args:
        checkpointer: Saves the state after every step, the specialists' inner steps included.
    """
    graph = StateGraph(TeamState, context_schema=TeamContext)
    graph.add_node("plan", plan)
    graph.add_node("specialist", specialist)
    graph.add_node("synthesize", synthesize)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", dispatch, ["specialist"])
    graph.add_edge("specialist", "synthesize")
    graph.add_edge("synthesize", END)
    return graph.compile(checkpointer=checkpointer)


class TeamKind(GraphKind):
    """The team graph as `AgentRuns` drives it: `specialist` can be paused for approval of the plan."""

    name = "team"
    model = "chimera-team"
    description = (
        "Supervisor team: plans sub-tasks for math, code and research agents, runs them in parallel, "
        "synthesizes the answer."
    )
    nodes = ("plan", "specialist", "synthesize")

    def build(self, checkpointer: BaseCheckpointSaver | None) -> CompiledStateGraph:
        return cast("CompiledStateGraph", build_team_graph(checkpointer))

    def reset(self) -> dict[str, Any]:
        return {"results": Overwrite([]), "plan": [], "citations": None}

    def pending(self, values: dict[str, Any]) -> tuple[PendingWork, ...]:
        return tuple(PendingSubTask(t.agent, t.task, SPECIALISTS[t.agent][1]) for t in values.get("plan", []))

    def decline(self, values: dict[str, Any], next_nodes: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
        if "specialist" not in next_nodes:
            return None
        results = [SubResult(t.agent, t.task, f"({DECLINED})", stop_reason="declined") for t in values["plan"]]
        return {"results": results}, "specialist"

    def context(self, inputs: RunInputs) -> TeamContext:
        agent = inputs.agent
        return TeamContext(
            experts=inputs.experts,
            tools=inputs.tools,
            max_tasks=agent.team_max_tasks,
            specialist_steps=agent.max_steps,
            decision_max_tokens=agent.decision_max_tokens,
            max_run_tokens=agent.max_run_tokens,
            answer_sampling={name: inputs.sampling_for(name) for name in inputs.experts},
            trace_parent=inputs.trace_parent,
            citation_check=inputs.citation_check,
        )

    def finished(self, final: dict[str, Any]) -> Finished:
        state = cast("TeamState", final)
        checked = state.get("citations")
        citations = tuple(team_citations(state)) if checked is None else checked
        return Finished(citations, team_stop_reason(state), {"chimera.team.tasks": len(state.get("plan", []))})
