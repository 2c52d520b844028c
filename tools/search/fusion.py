"""Fusion of several retrievers' rankings into one: reciprocal-rank fusion or weighted score fusion."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from chimera.tools.search.types import RetrievedChunk

Rankings = Mapping[str, Sequence[RetrievedChunk]]


class Fusion(ABC):
    """Joins per-retriever rankings (each best first) into one ranking of `k` chunks.

    Args:
        weights: weight of each retriever by name; a retriever not named has weight 1.
    """

    name: str

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = MappingProxyType(dict(weights or {}))

    def fuse(self, rankings: Rankings, k: int, scale: Mapping[str, float] | None = None) -> list[RetrievedChunk]:
        """The `k` best chunks by fused score; ties go to the chunk found first in retriever order.

        Args:
            rankings: each retriever's chunks, best first.
            k: how many to return.
            scale: per-query factors on the weights (a retriever's confidence for this query).
        """
        totals: dict[str, float] = {}
        chunks: dict[str, RetrievedChunk] = {}
        for retriever, ranking in rankings.items():
            weight = self.weights.get(retriever, 1.0) * (scale or {}).get(retriever, 1.0)
            if weight == 0 or not ranking:
                continue
            for chunk_id, score in self.contributions(ranking).items():
                totals[chunk_id] = totals.get(chunk_id, 0.0) + weight * score
            for r in ranking:
                chunks.setdefault(r.id, r)
        best = sorted(totals.items(), key=lambda item: -item[1])[:k]
        return [RetrievedChunk(chunks[cid].chunk, score, self.name) for cid, score in best]

    @abstractmethod
    def contributions(self, ranking: Sequence[RetrievedChunk]) -> dict[str, float]:
        """Each chunk's contribution to its fused score from one retriever's ranking."""


class ReciprocalRankFusion(Fusion):
    """RRF (Cormack et al. 2009): sum of weight / (k + rank); ignores score scales, needs no tuning."""

    name = "rrf"

    def __init__(self, weights: Mapping[str, float] | None = None, *, k: int = 60) -> None:
        super().__init__(weights)
        self.k = k

    def contributions(self, ranking: Sequence[RetrievedChunk]) -> dict[str, float]:
        return {r.id: 1.0 / (self.k + rank) for rank, r in enumerate(ranking, start=1)}


class WeightedScoreFusion(Fusion):
    """Convex combination of min-max normalised scores (each retriever's best → 1, its k-th → 0)."""

    name = "weighted"

    def contributions(self, ranking: Sequence[RetrievedChunk]) -> dict[str, float]:
        hi, lo = ranking[0].score, ranking[-1].score
        span = hi - lo
        return {r.id: (r.score - lo) / span if span > 0 else 1.0 for r in ranking}
