"""Fusion arithmetic, top-k selection under filters, rule-based entity extraction, and the entity-graph walk."""

from __future__ import annotations

import numpy as np
import pytest

from chimera.tools.search.base import top_rows
from chimera.tools.search.entities import TITLE_MENTIONS, extract, query_ngrams
from chimera.tools.search.entity_graph import EntityGraph
from chimera.tools.search.fusion import ReciprocalRankFusion, WeightedScoreFusion
from chimera.tools.search.index import chunk_entities
from chimera.tools.search.retrievers import GraphRetriever
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import Chunk, RetrievedChunk

pytestmark = pytest.mark.unit


def _chunk(text: str, *, tenant: str = "default", source: str = "doc.txt", title: str | None = None) -> Chunk:
    ordinal = hash(text) & 0xFFFF
    return Chunk(
        id=Chunk.make_id(tenant, source, ordinal, text),
        doc_id=source,
        text=text,
        source=source,
        ordinal=ordinal,
        content_hash="h",
        heading_path=(title,) if title else (),
        tenant=tenant,
    )


def _ranking(retriever: str, *scored: tuple[str, float]) -> list[RetrievedChunk]:
    return [RetrievedChunk(_chunk(name), score, retriever) for name, score in scored]


def _ids(found: list[RetrievedChunk]) -> list[str]:
    return [r.text for r in found]


# --- reciprocal-rank fusion ----------------------------------------------------------------------------------------


def test_rrf_sums_weighted_reciprocal_ranks() -> None:
    rankings = {
        "bm25": _ranking("bm25", ("a", 9.0), ("b", 5.0), ("c", 1.0)),
        "dense": _ranking("dense", ("c", 0.9), ("a", 0.8)),
    }
    fused = ReciprocalRankFusion({"bm25": 1.0, "dense": 2.0}, k=60).fuse(rankings, 10)

    expected = {"a": 1 / 61 + 2 / 62, "b": 1 / 62, "c": 1 / 63 + 2 / 61}
    assert _ids(fused) == sorted(expected, key=lambda n: -expected[n]) == ["c", "a", "b"]
    assert [r.score for r in fused] == pytest.approx([expected[n] for n in _ids(fused)], rel=1e-12)
    assert {r.retriever for r in fused} == {"rrf"}


def test_rrf_ignores_score_scales_and_cuts_to_k() -> None:
    small = {"bm25": _ranking("bm25", ("a", 0.003), ("b", 0.002), ("c", 0.001))}
    large = {"bm25": _ranking("bm25", ("a", 3000.0), ("b", 20.0), ("c", 1.0))}
    rrf = ReciprocalRankFusion()
    assert [(r.text, r.score) for r in rrf.fuse(small, 2)] == [(r.text, r.score) for r in rrf.fuse(large, 2)]
    assert _ids(rrf.fuse(small, 2)) == ["a", "b"]
    assert rrf.fuse({}, 5) == []
    assert rrf.fuse({"bm25": []}, 5) == []


def test_rrf_scale_multiplies_the_weight_for_one_query() -> None:
    rankings = {"bm25": _ranking("bm25", ("a", 2.0), ("b", 1.0)), "dense": _ranking("dense", ("b", 0.9))}
    rrf = ReciprocalRankFusion({"dense": 2.0}, k=10)

    unscaled = {r.text: r.score for r in rrf.fuse(rankings, 5)}
    assert unscaled == pytest.approx({"a": 1 / 11, "b": 1 / 12 + 2 / 11})
    assert _ids(rrf.fuse(rankings, 5)) == ["b", "a"]
    damped = rrf.fuse(rankings, 5, scale={"dense": 0.02, "bm25": 1.0})
    assert {r.text: r.score for r in damped} == pytest.approx({"a": 1 / 11, "b": 1 / 12 + 0.04 / 11})
    assert _ids(damped) == ["a", "b"]


@pytest.mark.parametrize(("weights", "scale"), [({"graph": 0.0}, None), ({}, {"graph": 0.0})])
def test_a_retriever_weighted_zero_contributes_nothing(weights: dict[str, float], scale: dict[str, float]) -> None:
    rankings = {
        "bm25": _ranking("bm25", ("a", 2.0), ("b", 1.0)),
        "graph": _ranking("graph", ("only-graph", 0.9), ("b", 0.5)),
    }
    fused = ReciprocalRankFusion(weights).fuse(rankings, 5, scale)
    assert _ids(fused) == ["a", "b"]
    assert [r.score for r in fused] == pytest.approx([1 / 61, 1 / 62])


def test_rrf_ties_go_to_the_chunk_found_first() -> None:
    one = _ranking("bm25", ("a", 2.0), ("b", 1.0))
    other = _ranking("dense", ("b", 0.9), ("a", 0.8))
    rrf = ReciprocalRankFusion()

    forward = rrf.fuse({"bm25": one, "dense": other}, 5)
    assert forward[0].score == forward[1].score
    assert _ids(forward) == ["a", "b"]
    assert _ids(rrf.fuse({"dense": other, "bm25": one}, 5)) == ["b", "a"]


# --- weighted score fusion -----------------------------------------------------------------------------------------


def test_weighted_fusion_min_max_normalises_each_retriever() -> None:
    rankings = {
        "bm25": _ranking("bm25", ("a", 10.0), ("b", 6.0), ("c", 2.0)),
        "dense": _ranking("dense", ("c", 0.9), ("b", 0.3)),
    }
    fused = WeightedScoreFusion({"bm25": 1.0, "dense": 0.5}).fuse(rankings, 5)
    # bm25: a → 1, b → 0.5, c → 0; dense: c → 1, b → 0 (its best and its last).
    assert {r.text: r.score for r in fused} == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.5})
    assert _ids(fused) == ["a", "b", "c"]  # b and c tie; b was found first
    assert {r.retriever for r in fused} == {"weighted"}


def test_weighted_fusion_is_invariant_to_each_retrievers_scale() -> None:
    base = {"bm25": _ranking("bm25", ("a", 8.0), ("b", 4.0), ("c", 3.0)), "dense": _ranking("dense", ("c", 0.6))}
    stretched = {
        "bm25": _ranking("bm25", ("a", 800.0), ("b", 400.0), ("c", 300.0)),
        "dense": _ranking("dense", ("c", 0.0006)),
    }
    fusion = WeightedScoreFusion()
    assert _ids(fusion.fuse(base, 3)) == _ids(fusion.fuse(stretched, 3)) == ["a", "c", "b"]
    assert [r.score for r in fusion.fuse(base, 3)] == pytest.approx([r.score for r in fusion.fuse(stretched, 3)])
    assert [r.score for r in fusion.fuse(base, 3)] == pytest.approx([1.0, 1.0, 0.2])


def test_weighted_fusion_gives_one_to_flat_rankings() -> None:
    single = {"bm25": _ranking("bm25", ("a", 3.0))}
    flat = {"bm25": _ranking("bm25", ("a", 2.0), ("b", 2.0))}
    fusion = WeightedScoreFusion({"bm25": 0.7})
    assert [r.score for r in fusion.fuse(single, 3)] == pytest.approx([0.7])
    assert [(r.text, r.score) for r in fusion.fuse(flat, 3)] == [("a", pytest.approx(0.7)), ("b", pytest.approx(0.7))]


# --- top-k under a filter mask -------------------------------------------------------------------------------------


def _reference_top(scores: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
    rows = [r for r in range(len(scores)) if allowed[r] and scores[r] > 0]
    return sorted(rows, key=lambda r: (-scores[r], r))[:k]


def test_top_rows_keeps_allowed_positive_rows_best_first() -> None:
    scores = np.array([5.0, 9.0, 0.0, -1.0, 7.0, 9.5, 3.0])
    allowed = np.array([True, True, True, True, True, False, True])
    assert top_rows(scores, 3, allowed).tolist() == [1, 4, 0]
    assert top_rows(scores, 10, allowed).tolist() == [1, 4, 0, 6]  # 0 and negative scores are no match
    assert top_rows(scores, 3, np.zeros(7, dtype=bool)).tolist() == []


def test_top_rows_breaks_ties_by_lower_row_even_at_the_cut() -> None:
    scores = np.array([1.0] + [2.0] * 40 + [0.5])
    assert top_rows(scores, 4, np.ones(len(scores), dtype=bool)).tolist() == [1, 2, 3, 4]
    assert top_rows(np.ones(100), 3, np.ones(100, dtype=bool)).tolist() == [0, 1, 2]


def test_top_rows_matches_a_sort_and_never_returns_fewer_than_available() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 300))
        scores = rng.integers(-2, 5, size=n).astype(np.float64)  # many ties, some non-matches
        allowed = rng.random(n) < rng.random()
        k = int(rng.integers(1, 60))
        got = top_rows(scores, k, allowed)
        assert got.tolist() == _reference_top(scores, k, allowed)
        assert len(got) == min(k, int((allowed & (scores > 0)).sum()))


# --- entity extraction ---------------------------------------------------------------------------------------------


def _entities(text: str, title: str | None = None) -> dict[str, tuple[str, int]]:
    return {e.id: (e.kind, e.count) for e in extract(text, title=title)}


def test_multi_word_names_are_found_and_stop_words_trimmed() -> None:
    found = _entities("Shirley Temple starred in Kiss and Tell. The European Union funded the restoration.")
    assert found == {"shirley temple": ("name", 1), "kiss and tell": ("name", 1), "european union": ("name", 1)}
    text = "We met Marie Curie at a lab near Paris; later Marie Curie left Paris."
    assert {e.id: e.name for e in extract(text)} == {"marie curie": "Marie Curie", "paris": "Paris"}
    assert _entities(text) == {"marie curie": ("name", 2), "paris": ("name", 2)}


def test_acronyms_and_codes_are_codes_counted_once_per_mention() -> None:
    found = _entities("Researchers at NASA found that BRCA1 and p53 raise IL-6 levels.")
    assert found == {"brca1": ("code", 1), "p53": ("code", 1), "il-6": ("code", 1), "nasa": ("code", 1)}
    assert _entities("BRCA1 carriers and BRCA1 relatives were screened.")["brca1"] == ("code", 2)


def test_a_capital_that_only_starts_a_sentence_names_nothing() -> None:
    assert _entities("Patients were treated with aspirin. Results improved quickly! However, costs rose.") == {}
    # but a name standing inside a sentence, or a multi-word name at its start, is one
    assert set(_entities("Forklifts are inspected by Halvorsen. Marie Curie visited.")) == {"halvorsen", "marie curie"}
    assert set(_entities("In Paris, the meeting ended.")) == {"paris"}


def test_the_title_counts_as_several_mentions_without_its_qualifier() -> None:
    found = extract("The film was released by Columbia Pictures.", title="Kiss and Tell (1945 film)")
    by_id = {e.id: e for e in found}
    assert by_id["kiss and tell"].kind == "title"
    assert by_id["kiss and tell"].count == TITLE_MENTIONS
    assert by_id["kiss and tell"].name == "Kiss and Tell"
    assert found[0].id == "kiss and tell"  # most mentioned first
    assert by_id["columbia pictures"].kind == "name"


def test_query_ngrams_match_lower_case_phrases_but_not_lone_common_words() -> None:
    grams = query_ngrams("who directed kiss and tell")
    assert "kiss and tell" in grams
    assert {"kiss", "tell", "who", "directed"}.isdisjoint(grams)
    assert not any(g.split()[0] in {"who", "and"} or g.split()[-1] == "and" for g in grams)

    grams = query_ngrams("Is BRCA1 expression higher in Paris?")
    assert {"brca1", "paris", "brca1 expression"} <= grams
    assert "expression" not in grams
    assert query_ngrams("the of and a") == set()
    assert query_ngrams("") == set()
    assert query_ngrams("   ?!  ") == set()


# --- the entity graph's personalized PageRank ----------------------------------------------------------------------

ACTRESS = _chunk("Shirley Temple starred in Kiss and Tell as a teenager.", source="temple.txt", title="Shirley Temple")
FILM = _chunk("The comedy was released by Columbia Pictures.", source="film.txt", title="Kiss and Tell")
ENGINE = _chunk("The engine runs on hydrogen.", source="engine.txt", title="Zephyr Engine")


@pytest.fixture
def graph() -> EntityGraph:
    graph = EntityGraph()
    graph.add([chunk_entities(c) for c in (ACTRESS, FILM, ENGINE)])
    return graph


def test_walk_reaches_a_chunk_two_hops_away(graph: EntityGraph) -> None:
    query = "Which studio released the film that Shirley Temple starred in?"
    assert set(graph.seeds(query)) == {"shirley temple"}  # the film is not named in the query
    actress, film, engine = graph.scores(query)
    assert actress > film > 0
    assert engine == 0


def test_walk_never_passes_through_a_disallowed_chunk(graph: EntityGraph) -> None:
    query = "Which studio released the film that Shirley Temple starred in?"
    scores = graph.scores(query, np.array([False, True, True]))
    assert scores.tolist() == [0.0, 0.0, 0.0]
    # the film is still found when the query names it itself
    scores = graph.scores("Who released Kiss and Tell?", np.array([False, True, True]))
    assert scores[0] == 0 and scores[1] > 0 and scores[2] == 0


def test_graph_retriever_returns_only_allowed_chunks_with_positive_mass(graph: EntityGraph) -> None:
    table = ChunkTable()
    table.append([ACTRESS, FILM, ENGINE])
    retriever = GraphRetriever(table, graph)
    found = retriever.retrieve("Shirley Temple", 5)
    assert [r.chunk for r in found] == [ACTRESS, FILM]
    assert retriever.retrieve("the of and a", 5) == []
    assert retriever.retrieve("nobody known here", 5) == []
    assert retriever.confidence("Shirley Temple") == 1.0
    assert retriever.confidence("the of and a") == 0.0


def test_removed_chunks_leave_the_walk(graph: EntityGraph) -> None:
    graph.keep(np.array([True, False, True]))
    assert len(graph) == 2
    actress, engine = graph.scores("Shirley Temple and Kiss and Tell")
    assert actress > 0 and engine == 0
