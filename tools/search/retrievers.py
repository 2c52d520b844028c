"""The three retrievers over one chunk table: BM25, dense, and graph (personalized PageRank)."""

from __future__ import annotations

import numpy as np

from chimera.tools.search.analysis import analyze
from chimera.tools.search.base import Retriever
from chimera.tools.search.bm25 import BM25Index
from chimera.tools.search.dense import DenseIndex
from chimera.tools.search.entity_graph import EntityGraph
from chimera.tools.search.table import ChunkTable


class BM25Retriever(Retriever):
    """Lexical matching, BM25Okapi scores."""

    name = "bm25"

    def __init__(self, table: ChunkTable, index: BM25Index) -> None:
        super().__init__(table)
        self.index = index

    def scores(self, query: str, allowed: np.ndarray) -> np.ndarray:
        return self.index.scores(query)


class DenseRetriever(Retriever):
    """Semantic matching: cosine similarity of sentence embeddings."""

    name = "dense"

    def __init__(self, table: ChunkTable, index: DenseIndex) -> None:
        super().__init__(table)
        self.index = index

    def scores(self, query: str, allowed: np.ndarray) -> np.ndarray:
        return self.index.scores(self.index.embed_query(query))


class GraphRetriever(Retriever):
    """Multi-hop matching: from the query's entities through the chunks that mention them to related chunks."""

    name = "graph"

    def __init__(self, table: ChunkTable, graph: EntityGraph) -> None:
        super().__init__(table)
        self.graph = graph

    def scores(self, query: str, allowed: np.ndarray) -> np.ndarray:
        return self.graph.scores(query, allowed)

    def confidence(self, query: str) -> float:
        """The squared share of the query's terms that its entities cover.

        Entity-centred questions ("Which position did the actress who played Corliss Archer hold?") are where
        the walk helps; in a claim full of common nouns with one incidental name it only adds noise. Tuned on the
        dev sets: weight × coverage² keeps SciFact's fused nDCG@10 (0.716 vs 0.715 without the graph) while the
        graph adds +0.035 Recall@5 on HotpotQA.
        """
        terms = set(analyze(query))
        if not terms:
            return 0.0
        covered = {t for seed in self.graph.seeds(query) for t in analyze(seed)}
        return (len(covered & terms) / len(terms)) ** 2
