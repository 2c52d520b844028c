"""The cross-encoder stage, with a tiny random-config cross-encoder saved to a temp dir (no hub)."""

from pathlib import Path

import pytest

from chimera.models.embedding.minilm import packaged_model_dir
from chimera.tools.search.rerank import Reranker
from chimera.tools.search.types import Chunk, RetrievedChunk

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(packaged_model_dir()).save_pretrained(folder)  # MiniLM's word pieces
    return folder


def _found(texts: list[str]) -> list[RetrievedChunk]:
    return [
        RetrievedChunk(Chunk(f"c{i}", "doc", t, "/doc.txt", i, "h"), score=1.0 / (i + 1), retriever="rrf")
        for i, t in enumerate(texts)
    ]


def test_head_is_reordered_by_the_model_and_the_tail_kept(tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    texts = ["the budget is four million", "the team is in Oslo", "a recipe for bread", "tail one", "tail two"]
    reranker = Reranker(tiny_cross_encoder, depth=3)
    out = reranker.rerank("what is the budget?", _found(texts))

    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
        [("what is the budget?", t) for t in texts[:3]]
    )
    head = sorted(zip(expected, texts[:3], strict=True), key=lambda p: -p[0])
    assert [r.text for r in out[:3]] == [t for _, t in head]
    assert [r.score for r in out[:3]] == pytest.approx([float(s) for s, _ in head], abs=1e-5)
    assert all(r.retriever == "rerank" for r in out[:3])
    assert [r.text for r in out[3:]] == ["tail one", "tail two"]


def test_nothing_to_rerank(tiny_cross_encoder: Path) -> None:
    assert Reranker(tiny_cross_encoder).rerank("q", []) == []
