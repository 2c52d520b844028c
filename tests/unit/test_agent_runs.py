"""Agent runs with checkpoints (LangGraph's in-memory saver) and scripted engines: pause for approval, approve,
decline, status, per-run state reset on a session's thread, and the errors of bad interrupts and resumes."""

import json
import uuid

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from chimera.agents.graph_kind import DECLINED, PendingSubTask, PendingToolCall, RunOutcome
from chimera.agents.runs import AgentRuns, InvalidInterruptError, NothingToResumeError, RunSettings
from chimera.agents.state import ProgressEvent, checkpoint_serializer
from chimera.config import AgentConfig
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.extractive import ExtractiveMemory
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import EXPERT_NAMES, ExpertSpec
from chimera.tools.calculator import Calculator
from chimera.tools.recall import MEMORY_SOURCE
from tests.unit.fakes import ScriptedEngine

pytestmark = pytest.mark.unit

SPEC = ExpertSpec(engine="fake", system_prompt="You are a test expert.")
NONE = json.dumps({"tool": "none"})
CALL = json.dumps({"tool": "calculator", "arguments": {"expression": "17 * 23"}})
QUESTION = [ChatMessage(role="user", content="What is 17 * 23?")]


def _runs(
    scripts: dict[str, list[str]],
    *,
    checkpointer: bool = True,
    memory: LongMemory | None = None,
    agent: AgentConfig | None = None,
) -> tuple[AgentRuns, dict[str, ScriptedEngine]]:
    engines = {name: ScriptedEngine(scripts.get(name, [])) for name in EXPERT_NAMES}
    experts = {name: Expert(name, SPEC, engine, "fake") for name, engine in engines.items()}  # type: ignore[arg-type]
    runs = AgentRuns(
        experts=experts,  # type: ignore[arg-type]
        tools={"calculator": Calculator()},
        agent=agent or AgentConfig(max_steps=3),
        checkpointer=InMemorySaver(serde=checkpoint_serializer()) if checkpointer else None,
        memory=memory,
    )
    return runs, engines


async def _collect(deltas) -> tuple[str, list[ProgressEvent], RunOutcome]:
    """The run's text and progress events, and the outcome it ends with (exactly one, last)."""
    text, events, outcomes = "", [], []
    async for d in deltas:
        assert not outcomes, "nothing may follow the outcome"
        if isinstance(d, str):
            text += d
        elif isinstance(d, RunOutcome):
            outcomes.append(d)
        else:
            events.append(d)
    assert len(outcomes) == 1
    return text, events, outcomes[0]


async def test_react_run_pauses_before_the_tool_call_and_resumes_when_approved() -> None:
    runs, engines = _runs({"math": [CALL, NONE, "It is 391."]})
    settings = RunSettings("react", "math", interrupt_before=("act",))
    text, events, outcome = await _collect(runs.run(settings, QUESTION, "s1"))
    assert (outcome.status, outcome.next, text) == ("paused", ("act",), "")
    assert outcome.pending == (PendingToolCall("calculator", {"expression": "17 * 23"}),)
    assert [e.kind for e in events] == ["paused"]
    status = await runs.status("s1")
    assert (status.status, status.graph, status.next, status.reason) == ("paused", "react", ("act",), "approval")

    settings_back, deltas = await runs.resume("s1", approve=True)
    text, events, resumed = await _collect(deltas)
    assert settings_back == settings  # graph, expert and interrupts come back from the checkpoint metadata
    assert text == "It is 391." and resumed.status == "done" and resumed.stop_reason == "answered"
    assert [(e.kind, e.observation) for e in events] == [("tool_call", None), ("tool_result", "391")]
    assert resumed.question == QUESTION[0]
    assert engines["math"].replies == []
    assert (await runs.status("s1")).status == "done"


async def test_declined_tool_call_becomes_an_observation_and_the_run_answers() -> None:
    runs, engines = _runs({"math": [CALL, NONE, "I could not calculate it."]})
    await _collect(runs.run(RunSettings("react", "math", interrupt_before=("act",)), QUESTION, "s2"))
    _, deltas = await runs.resume("s2", approve=False)
    text, events, resumed = await _collect(deltas)
    assert text == "I could not calculate it." and resumed.status == "done"
    assert events == []  # nothing ran
    decision_prompt = engines["math"].requests[1].messages
    assert any(DECLINED in m.content for m in decision_prompt)  # the model heard that the user declined


async def test_every_tool_call_of_an_approved_run_pauses_again() -> None:
    second = json.dumps({"tool": "calculator", "arguments": {"expression": "391 + 1"}})
    runs, _ = _runs({"math": [CALL, second, NONE, "392."]})
    settings = RunSettings("react", "math", interrupt_before=("act",))
    await _collect(runs.run(settings, QUESTION, "s3"))
    _, deltas = await runs.resume("s3", approve=True)
    _, _, outcome = await _collect(deltas)
    assert outcome.status == "paused" and outcome.pending == (PendingToolCall("calculator", {"expression": "391 + 1"}),)
    _, deltas = await runs.resume("s3", approve=True)
    text, _, outcome = await _collect(deltas)
    assert text == "392." and outcome.status == "done"


async def test_a_new_turn_on_the_session_starts_from_a_clean_state() -> None:
    runs, _ = _runs({"math": [CALL, NONE, "391.", NONE, "Hello."]})
    *_, first = await _collect(runs.run(RunSettings("react", "math"), QUESTION, "s4"))
    text, events, second = await _collect(
        runs.run(RunSettings("react", "math"), [ChatMessage(role="user", content="hi")], "s4")
    )
    assert text == "Hello." and events == [] and second.citations == ()
    snapshot = await runs._graphs["react"].aget_state({"configurable": {"thread_id": "s4"}})
    assert snapshot.values["tool_calls"] == [] and snapshot.values["steps"] == 1
    assert second.prompt_tokens < first.prompt_tokens + 10  # token counters were reset, not summed


async def test_team_pauses_after_planning_and_a_declined_plan_still_gets_an_answer() -> None:
    plan = json.dumps({"tasks": [{"agent": "math", "task": "Compute 17 * 23"}]})
    runs, engines = _runs({"chat": [plan, "The user declined; no result."]})
    settings = RunSettings("team", "chat", interrupt_before=("specialist",))
    _, events, outcome = await _collect(runs.run(settings, QUESTION, "t1"))
    assert outcome.status == "paused" and outcome.pending == (
        PendingSubTask("math", "Compute 17 * 23", ("calculator",)),
    )
    # what a human approves: who does what, with which tools (the API writes `as_dict`)
    assert [e.arguments for e in events] == [{"agent": "math", "task": "Compute 17 * 23", "tools": ["calculator"]}]
    assert outcome.pending[0].describe() == "math (calculator): Compute 17 * 23"
    _, deltas = await runs.resume("t1", approve=False)
    text, _, resumed = await _collect(deltas)
    assert text == "The user declined; no result." and resumed.stop_reason == "math:declined"
    assert DECLINED in engines["chat"].requests[-1].messages[-1].content
    assert engines["math"].requests == []  # the specialist never ran


async def test_team_stop_reason_names_a_specialist_that_ran_out_of_steps() -> None:
    plan = json.dumps({"tasks": [{"agent": "math", "task": "Compute"}]})
    loop = [json.dumps({"tool": "calculator", "arguments": {"expression": f"{i} + 1"}}) for i in range(4)]
    runs, _ = _runs({"chat": [plan, "Done."], "math": [*loop, "Partial."]})
    *_, outcome = await _collect(runs.run(RunSettings("team", "chat"), QUESTION, "t2"))
    assert outcome.status == "done" and outcome.stop_reason == "math:step_budget"


@pytest.mark.parametrize(("graph", "names"), [("react", ("specialist",)), ("team", ("act",)), ("react", ("nope",))])
def test_interrupts_must_name_nodes_of_the_graph(graph: str, names: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInterruptError, match="is not a node of the"):
        _runs({})[0].settings(graph, "chat", SamplingOverrides(), names)


async def test_resume_without_a_paused_run_is_refused() -> None:
    runs, _ = _runs({"math": [NONE, "391."]})
    with pytest.raises(NothingToResumeError, match="has no agent run"):
        await runs.resume("never-ran", approve=True)
    await _collect(runs.run(RunSettings("react", "math"), QUESTION, "s5"))
    with pytest.raises(NothingToResumeError, match="has finished"):
        await runs.resume("s5", approve=True)
    assert (await runs.status("never-ran")).status == "none"


async def test_interrupts_need_a_checkpointer() -> None:
    runs, _ = _runs({}, checkpointer=False)
    with pytest.raises(InvalidInterruptError, match="needs a checkpointer"):
        await _collect(runs.run(RunSettings("react", "math", interrupt_before=("act",)), QUESTION, "s6"))
    with pytest.raises(NothingToResumeError, match="not checkpointed"):
        await runs.resume("s6", approve=True)


async def test_react_and_team_runs_can_take_turns_on_one_session() -> None:
    plan = json.dumps({"tasks": [{"agent": "math", "task": "Compute 17 * 23"}]})
    math = [CALL, NONE, "391.", NONE, "Math: 391.", NONE, "391 again."]  # react, then the team's math specialist
    runs, _ = _runs({"math": math, "chat": [plan, "Team says 391."]})
    texts = []
    for graph, expert in (("react", "math"), ("team", "chat"), ("react", "math")):
        outcome = RunOutcome()
        text, _, outcome = await _collect(runs.run(RunSettings(graph, expert), QUESTION, "mixed"))  # type: ignore[arg-type]
        assert outcome.status == "done"
        texts.append(text)
    assert texts == ["391.", "Team says 391.", "391 again."]
    assert (await runs.status("mixed")).status == "done"


async def test_a_plan_of_bare_numbers_asks_approval_for_the_question_itself() -> None:
    # what the 135M supervisor wrote: tasks "1" and "2", which no one could approve or decline
    plan = json.dumps({"tasks": [{"agent": "math", "task": "1"}, {"agent": "research", "task": "2"}]})
    runs, _ = _runs({"chat": [plan]})
    *_, outcome = await _collect(
        runs.run(RunSettings("team", "chat", interrupt_before=("specialist",)), QUESTION, "t3")
    )
    assert [(p.agent, p.task) for p in outcome.pending] == [
        ("math", QUESTION[0].content),
        ("research", QUESTION[0].content),
    ]
    status = await runs.status("t3")
    assert [p.describe() for p in status.pending] == [
        f"math (calculator): {QUESTION[0].content}",
        f"research (hybrid_search, graph_query, recall): {QUESTION[0].content}",
    ]


async def test_the_answer_budget_is_the_configs_per_expert_unless_the_request_sets_one() -> None:
    agent = AgentConfig(max_steps=3, answer_max_tokens=300, answer_max_tokens_by_expert={"code": 700})
    runs, engines = _runs({"math": [NONE, "391.", NONE, "391."], "code": [NONE, "def f(): pass"]}, agent=agent)
    await _collect(runs.run(RunSettings("react", "math"), QUESTION, "b1"))
    await _collect(runs.run(RunSettings("react", "code"), QUESTION, "b2"))
    await _collect(runs.run(RunSettings("react", "math", SamplingOverrides(max_tokens=50)), QUESTION, "b3"))
    answers = [r for e in ("math", "code") for r in engines[e].requests if r.json_schema is None]
    assert [r.max_tokens for r in answers] == [300, 50, 700]
    assert AgentConfig().answer_tokens("text") == 512  # the default fits a grounded answer with its citations


VAULT = (
    "Minutes of the vault trial, second day. The guards changed at noon and the lights were tested twice.\n\n"
    "The vault code is 7314; it changes every Monday and only the night guard may open the door with it.\n\n"
    "Lunch was soup. The trial ends on Friday with a review of the alarm logs by the security team."
)


async def test_a_session_with_memory_grounds_the_question_in_it_and_cites_the_session_memory(redis_url: str) -> None:
    memory = ExtractiveMemory(redis_url)
    session = f"vault-{uuid.uuid4().hex}"
    await memory.read(session, VAULT)
    runs, engines = _runs({"chat": [NONE, "The vault code is 7314 [1]."]}, memory=memory)
    question = [ChatMessage(role="user", content="What is the vault code?")]
    try:
        text, events, outcome = await _collect(runs.run(RunSettings("react", "chat"), question, session))
    finally:
        await memory.close()
    assert [(e.kind, e.tool) for e in events] == [("tool_result", "recall")]  # grounded before any decision
    (citation,) = outcome.citations
    assert citation.source == MEMORY_SOURCE and "7314" in citation.text
    assert text == "The vault code is 7314 [1].\n\nSources:\n[1] session memory"
    decision, answer = engines["chat"].requests
    assert any("7314" in m.content for m in decision.messages)  # the model decided with the recollection in view
    assert "[1] session memory: " in answer.messages[-1].content and "7314" in answer.messages[-1].content
    assert outcome.stop_reason == "answered"


async def test_memory_grounds_only_questions_about_the_sessions_material(redis_url: str) -> None:
    memory = ExtractiveMemory(redis_url)
    with_memory, without = f"vault-{uuid.uuid4().hex}", f"plain-{uuid.uuid4().hex}"
    await memory.read(with_memory, VAULT)
    runs, engines = _runs({"math": [CALL, NONE, "391.", CALL, NONE, "391."]}, memory=memory)
    try:
        first = await _collect(runs.run(RunSettings("react", "math"), QUESTION, with_memory))
        second = await _collect(runs.run(RunSettings("react", "math"), QUESTION, without))
    finally:
        await memory.close()
    for text, events, outcome in (first, second):  # a calculation: nothing recalled, the run as without memory
        assert text == "391." and outcome.citations == () and outcome.stop_reason == "answered"
        assert [(e.kind, e.tool) for e in events] == [("tool_call", "calculator"), ("tool_result", "calculator")]
    offered = [
        [c["properties"]["tool"]["const"] for c in r.json_schema["anyOf"]] for r in engines["math"].requests[::3]
    ]
    assert offered == [["calculator", "recall", "none"], ["calculator", "none"]]  # recall only where memory holds some
