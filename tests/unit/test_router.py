import pytest

from chimera.messages import ChatMessage
from chimera.models.router.heuristic import HeuristicRouter


def _ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.mark.parametrize(
    ("text", "expert"),
    [("```python\nprint(1)\n```\nwhy does this fail?", "code"),
     ("Write a Python function that reverses a list", "code"),
     ("What is 17 * 23?", "math"),
     ("Solve the equation 2x + 3 = 11", "math"),
     ("Summarize this paragraph: The meeting covered budgets.", "text"),
     ("Translate 'good morning' into German", "text"),
     ("What should I cook for dinner tonight?", "chat"),
     ("Tell me about the history of Rome", "chat")],
)  # fmt: skip
def test_routes_by_signals(text: str, expert: str) -> None:
    assert HeuristicRouter().route(_ask(text)).expert == expert


def test_decision_explains_itself() -> None:
    decision = HeuristicRouter().route(_ask("Fix this bug: ```def f(): return 1/0```"))
    assert decision.expert == "code"
    assert "code_fence" in decision.signals
    assert decision.runner_up is not None and decision.runner_up != "code"
    assert 0.5 < decision.confidence <= 1.0
    assert decision.as_attributes()["chimera.route.expert"] == "code"


def test_no_signal_falls_back_to_default_with_low_confidence() -> None:
    decision = HeuristicRouter(default_expert="text").route(_ask("hello there"))
    assert (decision.expert, decision.confidence, decision.signals) == ("text", 0.5, ())


def test_routes_on_the_newest_user_turn() -> None:
    conversation = [
        *_ask("What is 2 + 2?"),
        ChatMessage(role="assistant", content="4"),
        *_ask("Translate it to French"),
    ]
    assert HeuristicRouter().route(conversation).expert == "text"
