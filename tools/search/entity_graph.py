"""The chunk–entity graph in memory, and personalized PageRank over it (HippoRAG's retrieval step).

The knowledge-graph store (`chimera.memory.graph`) is the durable copy that Cypher queries read; this is the
matrix the retriever walks, loaded from the store's mentions at start-up and kept in step with it on ingest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from chimera.tools.search.entities import Entity, extract, query_ngrams


class EntityGraph:
    """Row-aligned mention matrix: row i is the i-th chunk added (and kept), one column per entity.

    Args:
        damping: probability of following an edge rather than jumping back to the query's entities.
        iterations: power-iteration steps (the walk alternates entity → chunk → entity).
    """

    def __init__(self, *, damping: float = 0.5, iterations: int = 8) -> None:
        self.damping = damping
        self.iterations = iterations
        self._vocab: dict[str, int] = {}
        self._rows: list[dict[int, float]] = []
        self._cache: tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, mentions: Sequence[Sequence[Entity]]) -> None:
        """Append one row per chunk from its entity mentions."""
        for entities in mentions:
            self.add_counts([(e.id, e.count) for e in entities])
        self._cache = None

    def add_counts(self, mentions: Sequence[tuple[str, int]]) -> None:
        """Append one chunk's row from (entity id, mention count) pairs, as the graph store keeps them."""
        row: dict[int, float] = {}
        for entity, count in mentions:
            row[self._vocab.setdefault(entity, len(self._vocab))] = 1.0 + math.log(count)
        self._rows.append(row)
        self._cache = None

    def keep(self, mask: np.ndarray) -> None:
        """Drop every row where `mask` is False."""
        self._rows = [r for r, k in zip(self._rows, mask, strict=True) if k]
        self._cache = None

    def seeds(self, query: str) -> dict[str, float]:
        """The query's entities found in the graph, weighted by inverse document frequency."""
        _, _, _, df = self._matrices()
        n = max(len(self._rows), 1)
        candidates = {e.id for e in extract(query)} | query_ngrams(query)
        matched = sorted((g for g in candidates if g in self._vocab), key=len, reverse=True)
        chosen: list[str] = []
        for gram in matched:
            # "kiss and tell" found: its words "kiss" and "tell" are not seeds of their own.
            if not any(f" {gram} " in f" {longer} " for longer in chosen):
                chosen.append(gram)
        return {g: math.log(1 + n / df[self._vocab[g]]) for g in chosen if df[self._vocab[g]] > 0}

    def scores(self, query: str, allowed: np.ndarray | None = None) -> np.ndarray:
        """Personalized PageRank mass of every chunk, seeded at the query's entities.  # (N,) float64"""
        n = len(self._rows)
        seeds = self.seeds(query) if n else {}
        if not seeds:
            return np.zeros(n)
        to_chunk, to_entity, _, _ = self._matrices()
        restart = np.zeros(len(self._vocab))  # (E,)
        for gram, weight in seeds.items():
            restart[self._vocab[gram]] = weight
        restart /= restart.sum()
        entity_mass = restart
        for _ in range(self.iterations):
            chunk_mass = to_chunk @ entity_mass  # (N,)
            if allowed is not None:
                chunk_mass = chunk_mass * allowed  # the walk never passes through a chunk the caller may not see
            entity_mass = (1 - self.damping) * restart + self.damping * (to_entity @ chunk_mass)  # (E,)
        chunk_mass = to_chunk @ entity_mass
        return chunk_mass if allowed is None else chunk_mass * allowed

    def _matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        if self._cache is None:
            indptr = np.cumsum([0] + [len(r) for r in self._rows])
            indices = np.fromiter((j for r in self._rows for j in r), dtype=np.int64, count=indptr[-1])
            data = np.fromiter((w for r in self._rows for w in r.values()), dtype=np.float64, count=indptr[-1])
            weights = sp.csr_matrix((data, indices, indptr), shape=(len(self._rows), len(self._vocab)))  # (N, E)
            col_sum = np.asarray(weights.sum(axis=0)).ravel()  # (E,)
            row_sum = np.asarray(weights.sum(axis=1)).ravel()  # (N,)
            to_chunk = weights @ sp.diags(1 / np.where(col_sum > 0, col_sum, 1))  # (N, E) each column sums to 1
            to_entity = (sp.diags(1 / np.where(row_sum > 0, row_sum, 1)) @ weights).T.tocsr()  # (E, N)
            df = np.diff(weights.tocsc().indptr)  # (E,) chunks mentioning each entity
            self._cache = (to_chunk.tocsr(), to_entity, weights, df)
        return self._cache
