"""The learned router's parts: signals, calibration, the head files, the cascade, bad input, the capacity rule,
the CLIs."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from chimera.cli import main as cli
from chimera.config import RouterConfig
from chimera.messages import ChatMessage
from chimera.models.embedding.minilm import SentenceEmbedder, StaticEmbedder
from chimera.models.router.base import ExpertLoad
from chimera.models.router.factory import build_router
from chimera.models.router.gates import CascadeGate, CascadeHead, HeadGate
from chimera.models.router.gating import (
    GatingError,
    GatingHead,
    fit_class_calibration,
    fit_temperature,
    packaged_head,
    softmax,
    source_group,
)
from chimera.models.router.learned import LearnedRouter
from chimera.models.router.signals import extract_signals, has_words
from chimera.models.router.training import train_cascade, train_head


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


@pytest.fixture(scope="module")
def head() -> GatingHead:
    return GatingHead.load(packaged_head("static"))


@pytest.fixture(scope="module")
def gate(embedder: StaticEmbedder, head: GatingHead) -> HeadGate:
    return HeadGate(embedder, head)


def _ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_signals_name_their_evidence() -> None:
    assert "code_fence" in extract_signals("```python\nprint(1)\n```").fired
    assert "code_syntax" in extract_signals("def f(x):\n    return x").fired
    assert "math_notation" in extract_signals("what is 17 * 23").fired
    assert "transform_verb" in extract_signals("Summarize this article for me").fired
    assert extract_signals("Hello there, how are you?").fired == ()
    assert "code_request" in extract_signals("Write a program that prints the first 100 primes.").fired
    assert "code_request" not in extract_signals("What is the sum of the first 100 primes?").fired
    assert "math_question" in extract_signals("How many primes are there below 100?").fired
    assert "writing_request" in extract_signals("Could you write a short story about a lighthouse?").fired
    assert "given_text" in extract_signals("Make the following paragraph friendlier: we are closed.").fired
    assert extract_signals("a" * 100_000).length == 100_000
    assert not has_words("  \n\t ") and not has_words("🙂🎉🚀") and has_words("日本語")


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    true_t = 2.5
    y = np.array([rng.choice(4, p=p) for p in softmax(logits / true_t)])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_per_class_calibration_undoes_a_per_class_distortion() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(6000, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(logits)])
    distorted = logits / np.array([0.5, 1.0, 2.0, 1.0]) + np.array([0.0, 1.0, 0.0, -1.0])
    scale, shift, _ = fit_class_calibration(distorted, y)
    recovered = softmax(distorted * scale + shift)
    assert np.abs(recovered - softmax(logits)).mean() < 0.02


def test_sources_group_by_dataset() -> None:
    assert source_group("f/awesome-chatgpt-prompts@35e3774e:prompts.csv#12") == "f/awesome-chatgpt-prompts"
    assert source_group("openai/grade-school-math:train.jsonl#3") == "openai/grade-school-math"
    assert source_group("mine.jsonl") == "mine.jsonl"


def test_head_round_trips_and_rejects_foreign_files(tmp_path: Path, head: GatingHead) -> None:
    path = tmp_path / "head.npz"
    head.save(path)
    again = GatingHead.load(path)
    assert np.array_equal(again.weights, head.weights) and np.array_equal(again.bias, head.bias)
    assert again.meta["data_sha256"] == head.meta["data_sha256"]
    (tmp_path / "junk.npz").write_bytes(b"not a head")
    with pytest.raises(GatingError):
        GatingHead.load(tmp_path / "junk.npz")
    with pytest.raises(GatingError, match="chimera router train"):
        GatingHead.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("kind", ["static", "contextual", "cascade"])
def test_shipped_heads_are_small_say_where_they_came_from_and_route(kind: str) -> None:
    path = packaged_head(kind)
    assert path.stat().st_size < 5 * 1024 * 1024
    meta = CascadeHead.load(path).meta if kind == "cascade" else GatingHead.load(path).meta
    assert meta["embedder"] == kind and meta["seed"] == 0 and len(meta["data_sha256"]) == 64
    assert meta["cv"]["selected_by"] == "leave_one_source_out"  # selected on unseen sources, not random folds
    assert set(meta["cv"]["cv"]) == {"leave_one_source_out", "random_5_fold"}
    router = build_router(RouterConfig(embedder=kind))  # type: ignore[arg-type]
    assert router.route(_ask("Fix this Python bug: ```print(x[0]```")).expert == "code"


@pytest.mark.parametrize(("kind", "other"), [("contextual", "static"), ("static", "cascade"), ("cascade", "static")])
def test_a_head_for_other_features_is_refused(kind: str, other: str) -> None:
    with pytest.raises(GatingError, match=r"set router\.embedder"):
        build_router(RouterConfig(embedder=kind, head=packaged_head(other)))  # type: ignore[arg-type]


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
    gate: HeadGate, conversation: list[ChatMessage], reason: str
) -> None:
    decision = LearnedRouter(gate, RouterConfig(default_expert="text")).route(conversation)
    assert decision.expert == "text" and reason in decision.signals


@pytest.mark.parametrize("text", ["x " * 50_000, "¿Cuál es la capital de Francia?", "東京の天気はどうですか", "ok"])
def test_odd_but_real_text_gets_a_decision(gate: HeadGate, text: str) -> None:
    decision = LearnedRouter(gate).route(_ask(text))
    assert decision.expert in {"code", "math", "text", "chat"}
    assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert decision.runner_up is not None and decision.runner_up != decision.expert


def test_capacity_rule_spills_close_calls_and_keeps_confident_ones(gate: HeadGate) -> None:
    text = "Write a Python function that merges two sorted lists."
    calm = LearnedRouter(gate).route(_ask(text))
    assert calm.expert == "code" and not calm.spilled
    busy = {"code": ExpertLoad(ongoing=4, capacity=4), calm.runner_up: ExpertLoad(ongoing=0, capacity=4)}

    always_close = LearnedRouter(gate, RouterConfig(spill_margin=1.0)).route(_ask(text), load=busy)
    assert always_close.spilled and always_close.expert == calm.runner_up and always_close.runner_up == "code"

    never_close = LearnedRouter(gate, RouterConfig(spill_margin=0.0)).route(_ask(text), load=busy)
    assert never_close.expert == "code" and not never_close.spilled
    assert "saturated_but_confident" in never_close.signals

    both_busy = {**busy, calm.runner_up: ExpertLoad(ongoing=9, capacity=4)}
    nowhere = LearnedRouter(gate, RouterConfig(spill_margin=1.0)).route(_ask(text), load=both_busy)
    assert nowhere.expert == "code" and not nowhere.spilled


def _fixture_file(path: Path) -> Path:
    """40 prompts, 10 per expert, from two sources (`a` and `b`, every expert in each)."""
    rows = [
        *({"text": f"Write a Python function number {i} that sorts a list.", "label": "code"} for i in range(10)),
        *({"text": f"What is {i} * {i + 7} + 3?", "label": "math"} for i in range(10)),
        *({"text": f"Translate to French: I have {i} cats.", "label": "text"} for i in range(10)),
        *({"text": f"Tell me a fun fact about animal number {i}.", "label": "chat"} for i in range(10)),
    ]
    for i, row in enumerate(rows):
        row["source"] = f"{'ab'[i % 2]}/data:file.jsonl#{i}"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_training_is_seeded_and_records_its_data(tmp_path: Path, embedder: StaticEmbedder) -> None:
    data = _fixture_file(tmp_path / "train.jsonl")
    first, report = train_head([data], embedder, seed=3, folds=2)
    second, _ = train_head([data], embedder, seed=3, folds=2)
    assert np.array_equal(first.weights, second.weights) and np.array_equal(first.bias, second.bias)
    assert first.meta["seed"] == 3 and len(first.meta["data_sha256"]) == 64
    assert report.n == 40 and 0.0 <= report.cv["random_2_fold"]["macro_f1"] <= 1.0


def test_source_cv_holds_out_each_source_and_reports_per_class(tmp_path: Path, embedder: StaticEmbedder) -> None:
    data = _fixture_file(tmp_path / "train.jsonl")
    head, report = train_head([data], embedder, cv="source", folds=2)
    assert report.sources == 2 and report.selected_by == "leave_one_source_out"
    assert set(report.cv) == {"leave_one_source_out", "random_2_fold"}
    held_out = report.cv["leave_one_source_out"]
    assert set(held_out["per_class"]) == {"code", "math", "text", "chat"}
    assert sum(sum(row.values()) for row in held_out["confusion"].values()) == 40  # every row predicted once
    assert head.meta["cv"]["selected_by"] == "leave_one_source_out"
    single = tmp_path / "one-source.jsonl"
    single.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n"
                              for r in map(json.loads, data.read_text().splitlines())))  # fmt: skip
    with pytest.raises(GatingError, match="at least two sources"):
        train_head([single], embedder, cv="source")


def test_the_cascade_runs_the_transformer_only_where_the_static_head_is_unsure(
    tmp_path: Path, embedder: StaticEmbedder
) -> None:
    contextual = SentenceEmbedder(max_tokens=32)
    cascade, report = train_cascade([_fixture_file(tmp_path / "train.jsonl")], embedder, contextual, folds=2)
    assert report.cascade is not None and 0.0 <= report.cascade["deep_share"] <= 1 / 3
    cascade.save(tmp_path / "cascade.npz")
    again = CascadeHead.load(tmp_path / "cascade.npz")
    assert again.margin == cascade.margin and np.array_equal(again.deep.weights, cascade.deep.weights)

    texts = ["Write a Python function that sorts a list.", "Tell me a fun fact about owls."]
    never = CascadeGate(embedder, contextual, dataclasses.replace(cascade, margin=0.0)).score(texts)
    always = CascadeGate(embedder, contextual, dataclasses.replace(cascade, margin=1.01)).score(texts)
    assert not never.deep.any() and always.deep.all()
    assert np.allclose(always.probabilities.sum(axis=1), 1.0)
    decision = LearnedRouter(CascadeGate(embedder, contextual, dataclasses.replace(cascade, margin=1.01))).route(
        _ask(texts[0])
    )
    assert decision.deep and "cascade_deep" in decision.signals
    assert decision.as_attributes()["chimera.route.deep"] is True


def test_router_train_cli_reports_source_cv_beside_random_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out, report = _fixture_file(tmp_path / "train.jsonl"), tmp_path / "head.npz", tmp_path / "train.json"
    argv = ["router", "train", "--data", str(data), "--cv", "source", "--folds", "2", "--embedder", "static"]
    assert cli([*argv, "--out", str(out), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "leave_one_source_out" in printed and "random_2_fold" in printed and "confusion" in printed
    assert GatingHead.load(out).meta["embedder"] == "static"
    assert json.loads(report.read_text())["cv"]["leave_one_source_out"]["per_class"]["math"]["support"] == 10


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
    router = LearnedRouter(HeadGate(counting, head))
    conversation: list[ChatMessage] = []
    for i in range(12):
        conversation += _ask(f"Question number {i} about sorting lists in Python?")
        router.route(conversation)
        conversation.append(ChatMessage(role="assistant", content="(answer)"))
    assert counting.embedded == 12
