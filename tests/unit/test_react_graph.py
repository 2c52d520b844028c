"""Graph logic of the ReAct agent with a scripted engine: routing, bounds, tool errors as observations."""

import json
from pathlib import Path

import pytest

from chimera.agents.react import build_react_graph, cited, parse_decision, same_call
from chimera.agents.state import AgentContext, ProgressEvent, ToolCall
from chimera.memory.long_context.extractive import ExtractiveMemory
from chimera.messages import ChatMessage
from chimera.models.expert import Expert
from chimera.models.specs import ExpertSpec
from chimera.tools.base import Tool
from chimera.tools.calculator import Calculator, CalculatorArgs
from chimera.tools.recall import Recall
from tests.unit.fakes import PassageSearch, ScriptedEngine

SPEC = ExpertSpec(engine="fake", system_prompt="You are a test expert.")


def _call(expression: str) -> str:
    return json.dumps({"tool": "calculator", "arguments": {"expression": expression}})


NONE = json.dumps({"tool": "none"})


async def _run(
    replies: list[str],
    question: str = "What is 17 * 23?",
    max_steps: int = 3,
    max_run_tokens: int | None = None,
    tools: dict[str, Tool] | None = None,
):
    engine = ScriptedEngine(replies)
    context = AgentContext(
        expert=Expert("math", SPEC, engine, "fake"),
        tools=tools if tools is not None else {"calculator": Calculator()},
        max_steps=max_steps,
        decision_max_tokens=64,
        max_run_tokens=max_run_tokens,
    )
    state = await build_react_graph().ainvoke(
        {"messages": [ChatMessage(role="user", content=question)]}, context=context
    )
    return state, engine


async def test_tool_call_then_answer_uses_the_result() -> None:
    state, engine = await _run([_call("17 * 23"), NONE, "17 * 23 = 391"])
    assert [(c.tool, c.result) for c in state["tool_calls"]] == [("calculator", "391")]
    assert state["answer"] == "17 * 23 = 391"
    assert state["steps"] == 2
    # decisions were guided by the schema; the answer was free text with the result in view
    assert engine.requests[0].json_schema is not None and engine.requests[2].json_schema is None
    assert "391" in engine.requests[1].messages[-1].content  # observation fed back to the next decision
    assert "391" in engine.requests[2].messages[-1].content  # and handed to the answer
    assert state["prompt_tokens"] > 0 and state["completion_tokens"] > 0


async def test_no_tool_goes_straight_to_answer() -> None:
    state, _ = await _run([NONE, "Paris."], question="Capital of France?")
    assert state["tool_calls"] == [] and state["answer"] == "Paris." and state["steps"] == 1


async def test_tool_error_goes_back_to_the_model_as_observation() -> None:
    state, engine = await _run([_call("1 / 0"), _call("1 / 1"), NONE, "It is 1."])
    first, second = state["tool_calls"]
    assert first.error == "division by zero" and first.result is None
    assert "error: division by zero" in engine.requests[1].messages[-1].content
    assert second.result == "1"
    assert state["answer"] == "It is 1."


async def test_step_bound_forces_an_answer() -> None:
    replies = [_call(f"{i} + 1") for i in range(3)] + ["Done."]
    state, engine = await _run(replies, max_steps=2)
    assert len(state["tool_calls"]) == 2  # the third decision exceeded the bound and was not executed
    assert state["answer"] == "Done."
    assert state["stop_reason"] == "step_budget"
    assert engine.replies == []


async def test_repeated_identical_call_ends_the_loop() -> None:
    state, _ = await _run([_call("2 + 2"), _call("2 + 2"), "4"])
    assert len(state["tool_calls"]) == 1 and state["answer"] == "4"
    assert state["stop_reason"] == "repeated_call"


class CountedCalculator(Calculator):
    """The calculator, counting the calls it runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, args: CalculatorArgs) -> str:
        self.runs += 1
        return await super().run(args)


async def test_a_repeated_call_is_answered_from_its_observation_not_run_again() -> None:
    calculator = CountedCalculator()
    # the same call written with other spacing, as the demo's model did three times over
    state, engine = await _run(
        [_call("17*23"), _call(" 17 * 23 "), "17 * 23 is 391."], tools={"calculator": calculator}
    )
    assert calculator.runs == 1 and [c.result for c in state["tool_calls"]] == ["391"]
    assert state["stop_reason"] == "repeated_call" and state["steps"] == 2
    assert state["answer"] == "17 * 23 is 391."
    assert len(engine.requests) == 3  # two decisions, then the answer: no third decision
    assert engine.requests[2].json_schema is None and "391" in engine.requests[2].messages[-1].content


async def test_a_call_that_brings_back_an_earlier_result_ends_the_loop() -> None:
    state, engine = await _run([_call("17 * 23"), _call("23 * 17"), "391."], max_steps=4)
    assert [c.result for c in state["tool_calls"]] == ["391", "391"]  # both ran; the second taught nothing
    assert state["stop_reason"] == "repeated_result" and state["steps"] == 2
    assert state["answer"] == "391." and engine.replies == []
    assert engine.requests[2].messages[-1].content.count("= 391") == 1  # one fact for the answer, not two


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"expression": "17*23"}, {"expression": "17 * 23"}, True),
        ({"expression": "(1 + 2)  *3"}, {"expression": "(1+2) * 3"}, True),
        ({"query": "Heron  budget"}, {"query": " Heron budget"}, True),
        ({"query": "Heron budget"}, {"query": "Heron launch"}, False),
        ({"code": "if x:\n    a()\nb()"}, {"code": "if x:\n    a()\n    b()"}, False),  # indentation is code
    ],
)
def test_calls_are_the_same_up_to_spacing(a: dict, b: dict, same: bool) -> None:
    assert same_call(ToolCall("t", a), ToolCall("t", b)) is same
    assert not same_call(ToolCall("t", a), ToolCall("other", a))


async def test_token_budget_stops_the_loop_with_a_partial_answer() -> None:
    # a scripted decision costs its prompt's words + its reply's (~80 here, growing with each observation):
    # 150 tokens pay for the first decision, not the second
    replies = [_call("1 + 1"), _call("2 + 2"), "Partial: 2."]
    state, engine = await _run(replies, max_steps=5, max_run_tokens=150)
    assert [c.arguments["expression"] for c in state["tool_calls"]] == ["1 + 1"]
    assert state["stop_reason"] == "token_budget"
    assert state["answer"] == "Partial: 2."
    assert engine.replies == []


async def test_choosing_no_tool_is_an_answer() -> None:
    state, _ = await _run([NONE, "Paris."], question="Capital of France?")
    assert state["stop_reason"] == "answered"


async def test_unknown_tool_is_reported_not_raised() -> None:
    bad = json.dumps({"tool": "rm_rf", "arguments": {}})
    state, engine = await _run([bad, NONE, "Sorry."])
    assert "unknown tool" in (state["tool_calls"][0].error or "")
    assert "available: calculator" in engine.requests[1].messages[-1].content


@pytest.mark.parametrize("text", ['{"tool": "calc', "not json", "[1, 2]", '{"tool": "none"}'])
def test_unparseable_or_empty_decisions_mean_no_tool(text: str) -> None:
    assert parse_decision(text, known={"calculator"}) is None


async def test_answer_streams_through_custom_stream_mode() -> None:
    engine = ScriptedEngine([NONE, "one two three"])
    context = AgentContext(Expert("chat", SPEC, engine, "fake"), {"calculator": Calculator()}, 3, 64)
    graph = build_react_graph()
    chunks = [
        chunk
        async for mode, chunk in graph.astream(
            {"messages": [ChatMessage(role="user", content="count")]}, context=context, stream_mode=["custom", "values"]
        )
        if mode == "custom"
    ]
    assert chunks == ["one", " two", " three"]


async def test_progress_events_stream_before_the_answer() -> None:
    engine = ScriptedEngine([_call("17 * 23"), NONE, "It is 391."])
    context = AgentContext(
        expert=Expert("math", SPEC, engine, "fake"), tools={"calculator": Calculator()}, max_steps=3,
        decision_max_tokens=64,
    )  # fmt: skip
    chunks = [
        chunk
        async for chunk in build_react_graph().astream(
            {"messages": [ChatMessage(role="user", content="17 * 23?")]}, context=context, stream_mode="custom"
        )
    ]
    events = [c for c in chunks if isinstance(c, ProgressEvent)]
    assert [(e.kind, e.tool, e.observation) for e in events] == [
        ("tool_call", "calculator", None),
        ("tool_result", "calculator", "391"),
    ]
    assert chunks.index(events[-1]) < chunks.index(next(c for c in chunks if isinstance(c, str)))
    assert "".join(c for c in chunks if isinstance(c, str)) == "It is 391."


async def test_a_search_for_what_ground_already_found_is_not_run_again() -> None:
    handbook = PassageSearch([("handbook.md", "Meals are paid up to 45 euros a day.")])
    question = "How much are meals paid?"
    search = json.dumps({"tool": "hybrid_search", "arguments": {"query": question}})
    state, engine = await _run([search, "Up to 45 euros [1]."], question=question, tools={"hybrid_search": handbook})
    assert handbook.runs == 0 and state["stop_reason"] == "repeated_call"
    assert [c.source for c in cited(state["tool_calls"])] == ["handbook.md"]
    assert "[1] handbook.md: Meals are paid" in engine.requests[1].messages[-1].content
    assert state["answer"] == "Up to 45 euros [1].\n\nSources:\n[1] handbook.md"


async def test_a_memory_that_cannot_be_read_does_not_stop_the_run(tmp_path: Path) -> None:
    dead = ExtractiveMemory(f"unix://{tmp_path}/no.sock")
    tools: dict[str, Tool] = {"calculator": Calculator(), "recall": Recall(dead, "s")}
    try:
        state, _ = await _run([NONE, "Paris."], question="Capital of France?", tools=tools)
    finally:
        await dead.close()
    assert state["tool_calls"] == [] and state["answer"] == "Paris." and state["stop_reason"] == "answered"
