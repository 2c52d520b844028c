"""BM25Index scores equal rank_bm25.BM25Okapi.get_scores, also after updates."""

import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import rank_bm25

from chimera.tools.search.analysis import analyze
from chimera.tools.search.bm25 import BM25Index

pytestmark = pytest.mark.unit

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "retrieval" / "scifact" / "corpus.jsonl"


_NOISY = ("idlelib", "turtle", "tkinter", "antigravity", "this")  # GUI modules, and two that print on import


def stdlib_corpus(limit: int = 3000) -> list[str]:
    """Real English prose: docstrings of the standard library's modules, classes and functions."""
    texts: list[str] = []
    for name in sorted(sys.stdlib_module_names):
        module = sys.modules.get(name)
        if module is None:
            if importlib.util.find_spec(name) is None or name.startswith(
                ("idlelib", "turtle", "tkinter", "antigravity", "this")
            ):
                continue
            try:
                module = __import__(name)
            except Exception:  # some stdlib modules need optional system libraries; they just aren't in the corpus
                continue
        for _, member in inspect.getmembers(module):
            doc = inspect.getdoc(member) if callable(member) or inspect.ismodule(member) else None
            if doc and len(doc) > 80:
                texts.append(doc)
        if len(texts) >= limit:
            break
    return list(dict.fromkeys(texts))[:limit]


QUERIES = [
    "open a file and read its lines",
    "return the absolute value of a number",
    "thread lock acquire release",
    "parse a date string with a format",
    "socket connection timeout error",
    "the the the of",  # stop words only: no terms
    "zzzz-not-a-word",
    "error error error raise exception",  # repeated terms count repeatedly
]


@pytest.fixture(scope="module")
def corpus() -> list[list[str]]:
    docs = [analyze(t) for t in stdlib_corpus()]
    return [d for d in docs if d]


def test_scores_equal_rank_bm25(corpus: list[list[str]]) -> None:
    assert len(corpus) > 1000
    index = BM25Index()
    index.add_tokens(corpus)
    reference = rank_bm25.BM25Okapi(corpus)
    for q in QUERIES:
        tokens = analyze(q) if q != QUERIES[-1] else q.split()
        np.testing.assert_allclose(index.scores(tokens), reference.get_scores(tokens), rtol=0, atol=1e-6)
    assert index.scores(analyze("the the the of")).max() == 0


@pytest.mark.skipif(not SCIFACT.exists(), reason="the shared SciFact corpus is not on this machine")
def test_scores_equal_rank_bm25_on_scifact() -> None:
    import json

    with SCIFACT.open() as f:
        corpus = [analyze(json.loads(line)["title"] + " " + json.loads(line)["text"]) for line in f]
    index = BM25Index()
    index.add_tokens(corpus)
    reference = rank_bm25.BM25Okapi(corpus)
    for q in ("vitamin D deficiency and bone fractures", "microRNA regulation of tumour growth"):
        np.testing.assert_allclose(index.scores(analyze(q)), reference.get_scores(analyze(q)), atol=1e-6)


def test_updates_equal_a_rebuild(corpus: list[list[str]]) -> None:
    index = BM25Index()
    index.add_tokens(corpus[:500])
    index.scores(["file"])  # weights computed for the first version
    index.add_tokens(corpus[500:900])
    keep = np.ones(900, dtype=bool)
    keep[100:200] = False
    index.keep(keep)
    remaining = corpus[:100] + corpus[200:900]
    reference = rank_bm25.BM25Okapi(remaining)
    for q in QUERIES[:5]:
        np.testing.assert_allclose(index.scores(analyze(q)), reference.get_scores(analyze(q)), atol=1e-6)


def test_persistence_round_trip(corpus: list[list[str]], tmp_path: Path) -> None:
    index = BM25Index()
    index.add_tokens(corpus[:300])
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    for q in QUERIES[:3]:
        np.testing.assert_array_equal(loaded.scores(analyze(q)), index.scores(analyze(q)))


def test_empty_index_scores_nothing() -> None:
    assert BM25Index().scores("anything").shape == (0,)
