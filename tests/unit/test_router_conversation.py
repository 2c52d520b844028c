"""Multi-turn routing with the shipped head and the packaged MiniLM: follow-ups on the same topic keep their
expert; a confident change of topic moves it."""

import pytest

from chimera.config import RouterConfig
from chimera.messages import ChatMessage
from chimera.models.router.factory import build_router
from chimera.models.router.learned import LearnedRouter

# (expert of the opening turn, turns): none of the follow-ups changes the topic.
FOLLOW_UPS: list[tuple[str, list[str]]] = [
    ("code", ["Write a Python function that removes duplicates from a list.", "Now make it faster.",
              "Can you add type hints?", "And a docstring, please."]),
    ("code", ["```js\nconst x = arr.map(a => a * 2)\n```\nWhy does this return undefined in my reducer?",
              "I tried that, still broken.", "What if the array is empty?"]),
    ("code", ["Write a SQL query that returns the ten customers with the highest total order value.",
              "Also include their email.", "Sort it the other way."]),
    ("code", ["How do I read a CSV file in Rust?", "What crate should I use?", "Show me the error handling."]),
    ("code", ["My Docker container exits with code 137 right after it starts. Why?", "How do I check that?",
              "ok and then what"]),
    ("code", ["Refactor this Java class to use dependency injection: public class Repo { Db db = new Db(); }",
              "Explain why that is better.", "Thanks! Any downsides?"]),
    ("code", ["Write a bash script that renames all .txt files in a folder to .md.",
              "Make it work with spaces in names.", "Now do it recursively."]),
    ("code", ["Implement binary search in C++.", "What's its complexity?", "Write unit tests for it."]),
    ("math", ["Solve for x: 3x^2 - 12 = 0.", "Why are there two answers?", "Check them for me."]),
    ("math", ["A shirt costs $40 and is discounted by 15%. What is the new price?",
              "And if tax of 8% is added after?", "What about before the discount?"]),
    ("math", ["What is the derivative of x^3 * sin(x)?", "And the second derivative?", "Evaluate it at x = 0."]),
    ("math", ["How many ways can 5 people sit in a row?", "What if two of them must sit together?",
              "explain that step again"]),
    ("math", ["Compute the integral of 1/(1+x^2) from 0 to 1.", "Why is that pi/4?", "Give a decimal value."]),
    ("math", ["A train travels 240 km in 3 hours. What is its average speed?",
              "How long would 400 km take at that speed?", "In minutes?"]),
    ("math", ["What is the probability of rolling two sixes with two dice?", "And at least one six?",
              "What about three dice?"]),
    ("math", ["Find the sum of the first 100 positive integers.", "Show the formula.", "Now the first 1000."]),
    ("text", ["Summarize this paragraph: The council voted to extend the library's opening hours after a petition "
              "signed by 3,000 residents. The change costs about 40,000 a year and starts in March.",
              "Make it shorter.", "Now in a more formal tone."]),
    ("text", ["Translate to French: The meeting has been moved to Thursday afternoon.", "And to German?",
              "Make the German one more polite."]),
    ("text", ["Rewrite this email to sound more professional: hey, need the report asap, thx",
              "Add a sentence about the deadline being Friday.", "Shorter, please."]),
    ("text", ["Write a haiku about autumn rain.", "Another one, sadder.", "Now one about snow."]),
    ("text", ["Proofread this: Their going to announce the results tomorow, weather or not the data is ready.",
              "What did you change?", "Any other mistakes?"]),
    ("text", ["Write a cover letter for a junior accountant position at a logistics company.",
              "Mention my internship at a bank.", "Make the closing paragraph stronger."]),
    ("text", ["Paraphrase: The results were inconclusive, so the study will be repeated next year.",
              "Another version?", "One that a child would understand."]),
    ("text", ["Classify the sentiment of this review: The battery died after two days and support never answered.",
              "And this one: Works great, arrived early.", "Which one is more negative?"]),
    ("chat", ["What are some good habits for better sleep?", "What about on weekends?", "Is napping bad?"]),
    ("chat", ["Who was Ada Lovelace?", "Why is she famous?", "What else did she do?"]),
    ("chat", ["I'm visiting Lisbon next month. What should I see?", "Any good day trips?", "What food must I try?"]),
    ("chat", ["Hello! How are you today?", "What can you help me with?", "Cool, thanks."]),
    ("chat", ["What's the difference between a crocodile and an alligator?", "Which one is more dangerous?",
              "Where do they live?"]),
    ("chat", ["Can you recommend a few classic science fiction novels?", "Which one should I start with?",
              "Is there a film of it?"]),
    ("chat", ["Why is the sky blue?", "Then why are sunsets red?", "Does that happen on Mars too?"]),
    ("chat", ["How can I be more productive when working from home?", "What about staying motivated?",
              "Any apps you'd suggest?"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def router() -> LearnedRouter:
    built = build_router(RouterConfig())  # the default: learned, the packaged static → contextual cascade
    assert isinstance(built, LearnedRouter)
    return built


def _conversation(turns: list[str]) -> list[ChatMessage]:
    messages = []
    for turn in turns:
        messages += [ChatMessage(role="user", content=turn), ChatMessage(role="assistant", content="(answer)")]
    return messages[:-1]


def test_there_are_enough_scripted_follow_ups() -> None:
    assert len(FOLLOW_UPS) >= 30
    assert {expert for expert, _ in FOLLOW_UPS} == {"code", "math", "text", "chat"}


@pytest.mark.parametrize(("expert", "turns"), FOLLOW_UPS, ids=[t[0][:40] for _, t in FOLLOW_UPS])
def test_follow_ups_do_not_flip_the_expert(router: LearnedRouter, expert: str, turns: list[str]) -> None:
    decisions = [router.route(_conversation(turns[: i + 1])) for i in range(len(turns))]
    assert [d.expert for d in decisions] == [decisions[0].expert] * len(turns), [d.signals for d in decisions]


def test_openings_mostly_go_to_their_expert(router: LearnedRouter) -> None:
    hits = [router.route(_conversation(turns[:1])).expert == expert for expert, turns in FOLLOW_UPS]
    assert sum(hits) >= 0.9 * len(hits)


def test_a_confident_new_topic_switches(router: LearnedRouter) -> None:
    turns = ["Write a Python function that reverses a linked list.", "Now make it faster.",
             "Translate to Spanish: Good morning, the train leaves at nine."]  # fmt: skip
    first, second, third = (router.route(_conversation(turns[: i + 1])) for i in range(3))
    assert (first.expert, second.expert, third.expert) == ("code", "code", "text")
    assert "topic_switch" in third.signals


def test_the_follow_up_alone_would_go_elsewhere(router: LearnedRouter) -> None:
    # the reason hysteresis exists: on its own, "now make it faster" is not a code request
    alone = router.route([ChatMessage(role="user", content="Now make it faster.")])
    assert alone.expert != "code"
