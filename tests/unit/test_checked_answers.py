"""Agent answers with their citations checked (agents/citations.py wired into the ReAct and team graphs), on the
real MiniLM: markers move to the passage that supports them, Sources lists only what is cited, an answer the
documents do not support becomes an abstention, and an answer resting on a calculation never does."""

from __future__ import annotations

import json

import pytest

from chimera.agents.citations import CitationCheck, is_abstention
from chimera.agents.claim_support import OverlapScorer
from chimera.agents.react import ReactKind, build_react_graph
from chimera.agents.state import AgentContext
from chimera.agents.team import TeamContext, TeamKind, build_team_graph
from chimera.messages import ChatMessage
from chimera.models.embedding.minilm import SentenceEmbedder
from chimera.models.expert import Expert
from chimera.models.specs import ExpertSpec
from chimera.tools.base import Tool
from chimera.tools.calculator import Calculator
from tests.unit.fakes import PassageSearch, ScriptedEngine
from tests.unit.test_citations import DRAIN, INGEST, WORKERS

pytestmark = pytest.mark.unit

SPEC = ExpertSpec(engine="fake", system_prompt="You are a test expert.")
NONE = json.dumps({"tool": "none"})
INGEST_QUESTION = "What happens to unchanged files when ingest runs again?"


PASSAGES = [("README.md", INGEST), ("docs/operations.md", DRAIN), ("docs/operations.md", WORKERS)]


def docs(*, finds: bool = True) -> PassageSearch:
    return PassageSearch(PASSAGES, finds=finds)


@pytest.fixture(scope="module")
def check() -> CitationCheck:
    return CitationCheck(OverlapScorer(SentenceEmbedder()))


async def _react(replies: list[str], question: str, check: CitationCheck | None, tools: dict[str, Tool]):
    engine = ScriptedEngine(replies)
    context = AgentContext(Expert("text", SPEC, engine, "fake"), tools, max_steps=3, decision_max_tokens=64,
                           citation_check=check)  # fmt: skip
    streamed: list[str] = []
    final: dict = {}
    graph = build_react_graph()
    messages = [ChatMessage(role="user", content=question)]
    async for mode, chunk in graph.astream({"messages": messages}, context=context, stream_mode=["custom", "values"]):
        if mode == "custom" and isinstance(chunk, str):
            streamed.append(chunk)
        elif mode == "values":
            final = chunk
    return final, "".join(streamed)


async def test_a_marker_moves_to_its_passage_and_sources_list_only_what_is_cited(check: CitationCheck) -> None:
    answer = "Unchanged files are skipped, by their content hash [3]."
    final, streamed = await _react([NONE, answer], INGEST_QUESTION, check, {"hybrid_search": docs()})
    assert final["answer"] == "Unchanged files are skipped, by their content hash [1].\n\nSources:\n[1] README.md"
    assert streamed == final["answer"]  # held until checked, then sent as the user reads it
    (citation,) = ReactKind().finished(final).citations
    assert citation.source == "README.md" and citation.n == 1 and citation.verified is True
    assert citation.score is not None and citation.score >= check.scorer.support_threshold


async def test_without_a_check_every_retrieved_passage_is_listed() -> None:
    answer = "Unchanged files are skipped, by their content hash [3]."
    final, _ = await _react([NONE, answer], INGEST_QUESTION, None, {"hybrid_search": docs()})
    assert final["answer"].split("\n\nSources:\n")[1].count("\n") == 2  # all three, as retrieved
    assert all(c.verified is None for c in ReactKind().finished(final).citations)


async def test_an_answer_the_documents_do_not_hold_becomes_an_abstention(check: CitationCheck) -> None:
    invented = "The frobnicator spins at 9000 rpm [1]."
    final, streamed = await _react([NONE, invented], "How fast does the frobnicator spin?", check,
                                   {"hybrid_search": docs()})  # fmt: skip
    assert is_abstention(final["answer"]) and "README.md" in final["answer"] and "9000" not in streamed
    assert ReactKind().finished(final).citations == ()


async def test_an_answer_resting_on_a_calculation_never_abstains(check: CitationCheck) -> None:
    call = json.dumps({"tool": "calculator", "arguments": {"expression": "9000 / 60"}})
    tools: dict[str, Tool] = {"hybrid_search": docs(), "calculator": Calculator()}
    final, _ = await _react([call, NONE, "It spins 150 times a second [1]."], "How fast is 9000 rpm per second?",
                            check, tools)  # fmt: skip
    assert final["answer"] == "It spins 150 times a second [1].\n\nSources:\n[1] README.md (not verified)"
    assert [c.verified for c in ReactKind().finished(final).citations] == [False]


async def test_the_team_answer_is_checked_against_its_specialists_passages(check: CitationCheck) -> None:
    plan = json.dumps({"tasks": [{"agent": "research", "task": INGEST_QUESTION}]})
    engines = {
        "chat": ScriptedEngine([plan, "Unchanged files are skipped by their content hash [2]."]),
        "text": ScriptedEngine([NONE, "They are skipped [1]."]),
    }
    experts = {name: Expert(name, SPEC, engine, "fake") for name, engine in engines.items()}  # type: ignore[arg-type]
    context = TeamContext(experts=experts, tools={"hybrid_search": docs()}, citation_check=check)  # type: ignore[arg-type]
    final = await build_team_graph().ainvoke(
        {"messages": [ChatMessage(role="user", content=INGEST_QUESTION)]}, context=context
    )
    assert final["answer"] == "Unchanged files are skipped by their content hash [1].\n\nSources:\n[1] README.md"
    (citation,) = TeamKind().finished(final).citations
    assert citation.source == "README.md" and citation.verified is True


async def test_with_sources_required_a_run_that_found_nothing_abstains_without_asking_the_model() -> None:
    engine = ScriptedEngine([NONE])  # the decision only: no answer is generated
    context = AgentContext(Expert("text", SPEC, engine, "fake"), {"hybrid_search": docs(finds=False)}, max_steps=3,
                           decision_max_tokens=64, require_sources=True)  # fmt: skip
    question = [ChatMessage(role="user", content="What is the capital of Australia?")]
    final = await build_react_graph().ainvoke({"messages": question}, context=context)
    assert is_abstention(final["answer"]) and engine.replies == [] and len(engine.requests) == 1
    assert ReactKind().finished(final).citations == ()
    # not required (the default): the model answers a question the documents have nothing on
    final, _ = await _react([NONE, "Canberra."], "What is the capital of Australia?", None,
                            {"hybrid_search": docs(finds=False)})  # fmt: skip
    assert final["answer"] == "Canberra."


async def test_with_sources_required_a_search_or_call_that_found_nothing_is_no_source_but_a_result_is() -> None:
    question = [ChatMessage(role="user", content="What is the capital of Australia?")]
    search = json.dumps({"tool": "hybrid_search", "arguments": {"query": "capital of Australia"}})
    wrong = json.dumps({"tool": "calculator", "arguments": {"expression": "capital of Australia"}})
    for decision in (search, wrong):  # the run's own search found nothing; a failed call found nothing either
        engine = ScriptedEngine([decision, NONE])
        tools: dict[str, Tool] = {"hybrid_search": docs(finds=False), "calculator": Calculator()}
        context = AgentContext(Expert("text", SPEC, engine, "fake"), tools, max_steps=3, decision_max_tokens=64,
                               require_sources=True)  # fmt: skip
        final = await build_react_graph().ainvoke({"messages": question}, context=context)
        assert len(final["tool_calls"]) == 1 and is_abstention(final["answer"]), decision

    call = json.dumps({"tool": "calculator", "arguments": {"expression": "17 * 23"}})
    engine = ScriptedEngine([call, NONE, "It is 391."])
    context = AgentContext(Expert("math", SPEC, engine, "fake"), tools, max_steps=3, decision_max_tokens=64,
                           require_sources=True)  # fmt: skip
    final = await build_react_graph().ainvoke(
        {"messages": [ChatMessage(role="user", content="What is 17 * 23?")]}, context=context
    )
    assert final["answer"] == "It is 391."  # a result, not a source: the model answers from it
