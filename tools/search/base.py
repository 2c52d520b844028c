"""The retriever seam: `retrieve(query, k, filters) -> list[RetrievedChunk]`, filters applied before top-k."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from chimera.errors import ChimeraError
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import RetrievedChunk, SearchFilters

MAX_QUERY_CHARS = 4096


class SearchError(ChimeraError):
    """Retrieval could not run (a missing or unreadable index, a bad configuration)."""


def clip_query(query: str) -> str:
    """A query cut to a length retrievers handle in bounded time (a 10k-character paste is best-effort)."""
    return query.strip()[:MAX_QUERY_CHARS]


def top_rows(scores: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Rows of the `k` best positive scores among allowed rows, best first (ties: lower row first)."""
    candidates = np.flatnonzero(allowed & (scores > 0))  # ascending rows
    if k <= 0:
        return candidates[:0]
    if len(candidates) > k:
        # argpartition picks arbitrary rows among those tied with the k-th score; take the lowest of them instead.
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        better = candidates[scores[candidates] > kth]
        tied = candidates[scores[candidates] == kth][: k - len(better)]
        candidates = np.concatenate([better, tied])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


class Retriever(ABC):
    """One way of scoring the chunk table's rows against a query."""

    name: str

    def __init__(self, table: ChunkTable) -> None:
        self.table = table

    def retrieve(self, query: str, k: int = 10, filters: SearchFilters | None = None) -> list[RetrievedChunk]:
        """The `k` best chunks for `query` that `filters` admit, best first; empty for an empty query."""
        query = clip_query(query)
        if not query or k <= 0 or not len(self.table):
            return []
        allowed = self.table.mask(filters or SearchFilters())
        scores = self.scores(query, allowed)
        return [RetrievedChunk(self.table.chunks[r], float(scores[r]), self.name) for r in top_rows(scores, k, allowed)]

    def confidence(self, query: str) -> float:
        """How much this retriever's ranking should count for `query` in fusion (a factor on its weight)."""
        return 1.0

    @abstractmethod
    def scores(self, query: str, allowed: np.ndarray) -> np.ndarray:
        """A score for every row (0 or less: not a match).  # (N,)"""
