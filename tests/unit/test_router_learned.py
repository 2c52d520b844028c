"""The learned router's parts: signals, calibration, the head file, bad input, the capacity rule, the CLIs."""

import json
from pathlib import Path

import numpy as np
import pytest

from chimera.cli import main as cli
from chimera.config import RouterConfig
from chimera.messages import ChatMessage
from chimera.models.embedding.minilm import StaticEmbedder
from chimera.models.router.base import ExpertLoad
from chimera.models.router.factory import build_router
from chimera.models.router.gating import GatingError, GatingHead, fit_temperature, packaged_head, softmax
from chimera.models.router.learned import LearnedRouter
from chimera.models.router.signals import extract_signals, has_words
from chimera.models.router.training import train_head


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


@pytest.fixture(scope="module")
def head() -> GatingHead:
    return GatingHead.load(packaged_head("static"))


def _ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_signals_name_their_evidence() -> None:
    assert "code_fence" in extract_signals("```python\nprint(1)\n```").fired
    assert "code_syntax" in extract_signals("def f(x):\n    return x").fired
    assert "math_notation" in extract_signals("what is 17 * 23").fired
    assert "transform_verb" in extract_signals("Summarize this article for me").fired
    assert extract_signals("Hello there, how are you?").fired == ()
    assert extract_signals("a" * 100_000).length == 100_000
    assert not has_words("  \n\t ") and not has_words("🙂🎉🚀") and has_words("日本語")


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    true_t = 2.5
    y = np.array([rng.choice(4, p=p) for p in softmax(logits / true_t)])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_head_round_trips_and_rejects_foreign_files(tmp_path: Path, head: GatingHead) -> None:
    path = tmp_path / "head.npz"
    head.save(path)
    again = GatingHead.load(path)
    assert np.array_equal(again.weights, head.weights) and again.temperature == head.temperature
    assert again.meta["data_sha256"] == head.meta["data_sha256"]
    (tmp_path / "junk.npz").write_bytes(b"not a head")
    with pytest.raises(GatingError):
        GatingHead.load(tmp_path / "junk.npz")
    with pytest.raises(GatingError, match="chimera router train"):
        GatingHead.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("kind", ["static", "contextual"])
def test_shipped_heads_are_small_say_where_they_came_from_and_route(kind: str) -> None:
    path = packaged_head(kind)
    assert path.stat().st_size < 5 * 1024 * 1024
    head = GatingHead.load(path)
    assert head.meta["embedder"] == kind and head.meta["seed"] == 0 and head.meta["cv"]["folds"] == 5
    assert len(head.meta["data_sha256"]) == 64
    router = build_router(RouterConfig(embedder=kind))  # type: ignore[arg-type]
    assert router.route(_ask("Fix this Python bug: ```print(x[0]```")).expert == "code"


def test_a_head_for_other_features_is_refused() -> None:
    with pytest.raises(GatingError, match=r"set router\.embedder"):
        build_router(RouterConfig(embedder="contextual", head=packaged_head("static")))


@pytest.mark.parametrize(
    ("conversation", "reason"),
    [
        ([], "no_user_turn"),
        ([ChatMessage(role="system", content="be nice")], "no_user_turn"),
        (_ask(""), "empty_text"),
        (_ask("   \n  "), "empty_text"),
        (_ask("🙂🎉🚀"), "no_words"),
    ],
)
def test_nothing_to_route_on_goes_to_the_default_with_a_reason(
    embedder: StaticEmbedder, head: GatingHead, conversation: list[ChatMessage], reason: str
) -> None:
    decision = LearnedRouter(embedder, head, RouterConfig(default_expert="text")).route(conversation)
    assert decision.expert == "text" and reason in decision.signals


@pytest.mark.parametrize("text", ["x " * 50_000, "¿Cuál es la capital de Francia?", "東京の天気はどうですか", "ok"])
def test_odd_but_real_text_gets_a_decision(embedder: StaticEmbedder, head: GatingHead, text: str) -> None:
    decision = LearnedRouter(embedder, head).route(_ask(text))
    assert decision.expert in {"code", "math", "text", "chat"}
    assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert decision.runner_up is not None and decision.runner_up != decision.expert


def test_capacity_rule_spills_close_calls_and_keeps_confident_ones(embedder: StaticEmbedder, head: GatingHead) -> None:
    text = "Write a Python function that merges two sorted lists."
    calm = LearnedRouter(embedder, head).route(_ask(text))
    assert calm.expert == "code" and not calm.spilled
    busy = {"code": ExpertLoad(ongoing=4, capacity=4), calm.runner_up: ExpertLoad(ongoing=0, capacity=4)}

    always_close = LearnedRouter(embedder, head, RouterConfig(spill_margin=1.0)).route(_ask(text), load=busy)
    assert always_close.spilled and always_close.expert == calm.runner_up and always_close.runner_up == "code"

    never_close = LearnedRouter(embedder, head, RouterConfig(spill_margin=0.0)).route(_ask(text), load=busy)
    assert never_close.expert == "code" and not never_close.spilled
    assert "saturated_but_confident" in never_close.signals

    both_busy = {**busy, calm.runner_up: ExpertLoad(ongoing=9, capacity=4)}
    nowhere = LearnedRouter(embedder, head, RouterConfig(spill_margin=1.0)).route(_ask(text), load=both_busy)
    assert nowhere.expert == "code" and not nowhere.spilled


def _fixture_file(path: Path) -> Path:
    rows = [
        *({"text": f"Write a Python function number {i} that sorts a list.", "label": "code"} for i in range(10)),
        *({"text": f"What is {i} * {i + 7} + 3?", "label": "math"} for i in range(10)),
        *({"text": f"Translate to French: I have {i} cats.", "label": "text"} for i in range(10)),
        *({"text": f"Tell me a fun fact about animal number {i}.", "label": "chat"} for i in range(10)),
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_training_is_seeded_and_records_its_data(tmp_path: Path, embedder: StaticEmbedder) -> None:
    data = _fixture_file(tmp_path / "train.jsonl")
    first, report = train_head(data, embedder, seed=3, folds=2)
    second, _ = train_head(data, embedder, seed=3, folds=2)
    assert np.array_equal(first.weights, second.weights) and first.temperature == second.temperature
    assert first.meta["seed"] == 3 and len(first.meta["data_sha256"]) == 64
    assert report.n == 40 and 0.0 <= report.cv_macro_f1 <= 1.0


def test_eval_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fixture_file(tmp_path / "eval.jsonl")
    out = tmp_path / "report.json"
    assert cli(["eval", "router", "--data", str(data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 40
    assert {"accuracy", "macro_f1", "per_class", "confusion", "latency_ms", "perturbed_macro_f1"} <= set(report)
    assert set(report["per_class"]["code"]) == {"precision", "recall", "f1", "support"}
    assert report["latency_ms"]["p50"] > 0
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 40
    assert "macro-F1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "hi", "label": "poetry"}\n', "not one of"),
        ('{"text": "hi"}\n', "expected a JSON object"),
        ("not json\n", "expected a JSON object"),
    ],
)
def test_eval_cli_rejects_bad_data_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    assert cli(["eval", "router", "--data", str(data)]) == 2
    assert message in capsys.readouterr().err
    assert cli(["eval", "router", "--data", str(tmp_path / "missing.jsonl")]) == 2


class CountingEmbedder:
    """The static embedder, counting the texts it is asked to embed."""

    kind = "static"

    def __init__(self, inner: StaticEmbedder) -> None:
        self.inner, self.max_tokens, self.embedded = inner, inner.max_tokens, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner.embed(texts)


def test_a_growing_conversation_embeds_only_its_new_turn(embedder: StaticEmbedder, head: GatingHead) -> None:
    counting = CountingEmbedder(embedder)
    router = LearnedRouter(counting, head)
    conversation: list[ChatMessage] = []
    for i in range(12):
        conversation += _ask(f"Question number {i} about sorting lists in Python?")
        router.route(conversation)
        conversation.append(ChatMessage(role="assistant", content="(answer)"))
    assert counting.embedded == 12
