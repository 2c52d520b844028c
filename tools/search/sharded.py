"""The index sharded across Ray actors: BM25 and dense fan out to shards, the graph stays whole.

Each document lives in one shard (by a hash of its source), so a delete touches one actor. A query is embedded
once, sent to every shard with the corpus-wide BM25 statistics (so a shard's scores equal the unsharded index's),
and each retriever's per-shard top lists are merged by score. The entity graph is not split: multi-hop walks
cross shard boundaries, and its store (Neo4j in production) is one database anyway, so graph retrieval runs
beside the coordinator. Results therefore equal the unsharded index's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chimera.models.router.embedder import SentenceEmbedder
from chimera.tools.search.base import clip_query, top_rows
from chimera.tools.search.bm25 import BM25Index, BM25Stats
from chimera.tools.search.dense import DenseIndex
from chimera.tools.search.entity_graph import EntityGraph
from chimera.tools.search.fusion import Fusion, ReciprocalRankFusion
from chimera.tools.search.index import chunk_entities
from chimera.tools.search.retrievers import GraphRetriever
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import DEFAULT_TENANT, Chunk, RetrievedChunk, SearchFilters

Hit = tuple[float, str]  # (score, chunk id)


class IndexShard:
    """One shard's BM25 and dense indexes over its part of the chunks (hosted in a Ray actor)."""

    def __init__(self, model_dir: Path | None = None, max_tokens: int = 256) -> None:
        self.table = ChunkTable()
        self.bm25 = BM25Index()
        self.dense = DenseIndex(SentenceEmbedder(model_dir, max_tokens=max_tokens))

    def add(self, chunks: Sequence[Chunk]) -> int:
        texts = [c.index_text for c in chunks]
        vectors = self.dense.embedder.embed(texts)
        self.table.append(chunks)
        self.bm25.add(texts)
        self.dense.add_vectors(vectors)
        return len(self.table)

    def remove_sources(self, sources: Sequence[str], tenant: str) -> int:
        gone = self.table.rows_of_sources(sources, tenant)
        for part in (self.bm25, self.dense, self.table):
            part.keep(~gone)
        return int(gone.sum())

    def stats(self) -> BM25Stats:
        return self.bm25.stats()

    def search(
        self, query: str, vector: np.ndarray, depth: int, filters: SearchFilters, stats: BM25Stats
    ) -> dict[str, list[tuple[float, Chunk]]]:
        """This shard's top `depth` per retriever, filters applied before the cut."""
        allowed = self.table.mask(filters)
        out: dict[str, list[tuple[float, Chunk]]] = {}
        for name, scores in (("bm25", self.bm25.scores(query, stats=stats)), ("dense", self.dense.scores(vector))):
            out[name] = [(float(scores[r]), self.table.chunks[r]) for r in top_rows(scores, depth, allowed)]
        return out


class ShardedIndex:
    """Coordinator over `shards` IndexShard actors, with the graph retriever beside it.

    Args:
        shards: number of shard actors to start (Ray must be initialised).
        model_dir: the embedding model's local folder (None: the packaged MiniLM).
        max_tokens: word pieces embedded per chunk (as `search.embedding_max_tokens`).
    """

    def __init__(
        self,
        shards: int,
        *,
        model_dir: Path | None = None,
        max_tokens: int = 256,
        fusion: Fusion | None = None,
        depth: int = 50,
    ) -> None:
        import ray

        actor = ray.remote(num_cpus=0)(IndexShard)
        self._ray = ray
        self.shards: list[Any] = [actor.remote(model_dir, max_tokens) for _ in range(shards)]
        self.embedder = SentenceEmbedder(model_dir, max_tokens=max_tokens)
        self.fusion = fusion or ReciprocalRankFusion()
        self.depth = depth
        self.table = ChunkTable()  # the graph's rows; chunk texts for citations stay in the shards
        self.graph = EntityGraph()
        self.graph_retriever = GraphRetriever(self.table, self.graph)
        self._stats: BM25Stats | None = None

    def shard_of(self, source: str) -> int:
        """Which shard holds a document (stable across runs and machines)."""
        digest = hashlib.blake2b(source.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % len(self.shards)

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Index chunks in their documents' shards (in parallel) and in the graph."""
        parts: list[list[Chunk]] = [[] for _ in self.shards]
        for c in chunks:
            parts[self.shard_of(c.source)].append(c)
        pending = [s.add.remote(p) for s, p in zip(self.shards, parts, strict=True) if p]
        self.table.append(chunks)
        self.graph.add([chunk_entities(c) for c in chunks])
        self._ray.get(pending)
        self._stats = None

    def remove_sources(self, sources: Sequence[str], tenant: str = DEFAULT_TENANT) -> int:
        """Remove documents from their shards and the graph."""
        removed = sum(self._ray.get([s.remove_sources.remote(sources, tenant) for s in self.shards]))
        gone = self.table.rows_of_sources(sources, tenant)
        self.graph.keep(~gone)
        self.table.keep(~gone)
        self._stats = None
        return int(removed)

    def retrieve_each(
        self, query: str, k: int, filters: SearchFilters | None = None
    ) -> dict[str, list[RetrievedChunk]]:
        """Each retriever's corpus-wide top `k`: shards fan out, their lists merge by score."""
        query = clip_query(query)
        if not query:
            return {"bm25": [], "dense": [], "graph": []}
        filters = filters or SearchFilters()
        if self._stats is None:
            self._stats = BM25Stats.merge(self._ray.get([s.stats.remote() for s in self.shards]))
        vector = self.embedder.embed([query])[0]
        pending = [s.search.remote(query, vector, k, filters, self._stats) for s in self.shards]
        graph = self.graph_retriever.retrieve(query, k, filters)
        merged: dict[str, list[RetrievedChunk]] = {}
        for part in self._ray.get(pending):
            for name, hits in part.items():
                merged.setdefault(name, []).extend(RetrievedChunk(c, score, name) for score, c in hits)
        out = {name: sorted(hits, key=lambda r: -r.score)[:k] for name, hits in merged.items()}
        out["graph"] = graph
        return out

    def search(self, query: str, k: int = 5, filters: SearchFilters | None = None) -> list[RetrievedChunk]:
        """The `k` best chunks by fusion, exactly as the unsharded `HybridIndex.search` ranks them."""
        rankings = self.retrieve_each(query, max(self.depth, k), filters)
        return self.fusion.fuse(rankings, k, {"graph": self.graph_retriever.confidence(query)})
