"""Graph logic of the supervisor team with scripted engines: plan, parallel specialists, synthesis, fallbacks."""

import json
from dataclasses import replace

import pytest

from chimera.agents.team import SubTask, TeamContext, build_team_graph, parse_plan, says_something, team_citations
from chimera.messages import ChatMessage
from chimera.models.expert import Expert, SamplingOverrides
from chimera.models.specs import ExpertSpec
from chimera.tools.calculator import Calculator
from tests.unit.fakes import ScriptedEngine

pytestmark = pytest.mark.unit

SPEC = ExpertSpec(engine="fake", system_prompt="You are a test expert.")
NONE = json.dumps({"tool": "none"})


def _plan(*tasks: tuple[str, str]) -> str:
    return json.dumps({"tasks": [{"agent": a, "task": t} for a, t in tasks]})


def _team(scripts: dict[str, list[str]]) -> tuple[TeamContext, dict[str, ScriptedEngine]]:
    engines = {name: ScriptedEngine(replies) for name, replies in scripts.items()}
    experts = {name: Expert(name, SPEC, engine, "fake") for name, engine in engines.items()}  # type: ignore[arg-type]
    return TeamContext(experts=experts, tools={"calculator": Calculator()}), engines  # type: ignore[arg-type]


async def _run(context: TeamContext, question: str) -> tuple[dict, list[str]]:
    streamed: list[str] = []
    final: dict = {}
    async for mode, chunk in build_team_graph().astream(
        {"messages": [ChatMessage(role="user", content=question)]}, context=context, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            streamed.append(chunk)
        else:
            final = chunk
    return final, streamed


async def test_plan_runs_specialists_in_parallel_and_synthesizes() -> None:
    context, engines = _team(
        {
            "chat": [_plan(("math", "Compute 17 * 23"), ("code", "Write a reverse function")), "391, and the code."],
            "math": [json.dumps({"tool": "calculator", "arguments": {"expression": "17 * 23"}}), NONE, "It is 391."],
            "code": [NONE, "def rev(s): return s[::-1]"],
            "text": [],
        }
    )
    final, streamed = await _run(context, "What is 17 * 23, and write a string reverse in Python.")
    assert final["plan"] == [SubTask("math", "Compute 17 * 23"), SubTask("code", "Write a reverse function")]
    assert {r.agent: r.answer for r in final["results"]} == {"math": "It is 391.", "code": "def rev(s): return s[::-1]"}
    assert final["answer"] == "391, and the code."
    # only the synthesizer speaks to the user; the specialists' answers stay inside the graph
    assert "".join(streamed) == "391, and the code."
    findings = engines["chat"].requests[-1].messages[-1].content
    assert "It is 391." in findings and "s[::-1]" in findings
    assert engines["math"].replies == [] and engines["code"].replies == []  # every scripted step was used


async def test_unparseable_plan_falls_back_to_one_research_task() -> None:
    context, _ = _team({"chat": ["not json", "Done."], "text": [NONE, "Nothing found."]})
    final, _ = await _run(context, "Tell me about the Zephyr project.")
    assert final["plan"] == [SubTask("research", "Tell me about the Zephyr project.")]
    assert final["results"][0].answer == "Nothing found."
    assert team_citations(final) == []


def test_parse_plan_bounds_and_filters() -> None:
    a, b, c, d, e = (f"Do step {x}" for x in "abcde")
    text = _plan(("math", a), ("poetry", b), ("code", " "), ("research", c), ("math", d), ("code", e))
    assert parse_plan(text, "q", max_tasks=3) == [SubTask("math", a), SubTask("research", c), SubTask("math", d)]
    assert parse_plan('{"tasks": []}', "q", 3) == [SubTask("research", "q")]
    assert parse_plan('{"tasks": [{"agent": "math"}]}', "q", 3) == [SubTask("research", "q")]


@pytest.mark.parametrize("task", ["1", "2", "3 4", "...", "math", "- -"])
def test_a_task_that_says_nothing_is_the_whole_question(task: str) -> None:
    question = "What is 15% of 240, and what does the travel policy say about meals?"
    assert parse_plan(_plan(("math", task)), question, 3) == [SubTask("math", question)]
    assert not says_something(task)


def test_a_sub_task_planned_twice_runs_once() -> None:
    plan = parse_plan(_plan(("math", "1"), ("math", "2"), ("research", "Find the meal allowance")), "Q?", 3)
    assert plan == [SubTask("math", "Q?"), SubTask("research", "Find the meal allowance")]


async def test_specialists_and_synthesizer_answer_within_their_experts_budgets() -> None:
    context, engines = _team(
        {
            "chat": [_plan(("math", "Compute 17 * 23"), ("code", "Write a reverse function")), "Both done."],
            "math": [NONE, "391."],
            "code": [NONE, "def rev(s): return s[::-1]"],
        }
    )
    budgets = {"chat": SamplingOverrides(max_tokens=500), "math": SamplingOverrides(max_tokens=200),
               "code": SamplingOverrides(max_tokens=900)}  # fmt: skip
    await _run(replace(context, answer_sampling=budgets), "What is 17 * 23, and write a string reverse.")
    answers = {name: [r.max_tokens for r in e.requests if r.json_schema is None] for name, e in engines.items()}
    assert answers == {"chat": [500], "math": [200], "code": [900]}
