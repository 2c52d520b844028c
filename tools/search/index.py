"""The hybrid index: one chunk table with BM25, dense and graph retrievers over it, fused; persisted on disk.

Layout under the index directory:
    CURRENT            name of the live version folder (replaced atomically after a version is complete)
    v000042/           chunks.jsonl, bm25_*.{npz,npy,json}, dense.npy
    graph/             the embedded graph store (when no Neo4j is configured)
A crash while saving leaves the previous version live: nothing already indexed is lost.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chimera.memory.graph.knowledge import ChunkMentions, EntityMention, KnowledgeGraph
from chimera.models.embedding.base import Embedder
from chimera.tools.search.base import Retriever, clip_query
from chimera.tools.search.bm25 import BM25Index
from chimera.tools.search.dense import DenseIndex
from chimera.tools.search.entities import Entity, extract
from chimera.tools.search.entity_graph import EntityGraph
from chimera.tools.search.fusion import Fusion, ReciprocalRankFusion
from chimera.tools.search.rerank import Reranker
from chimera.tools.search.retrievers import BM25Retriever, DenseRetriever, GraphRetriever
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import DEFAULT_TENANT, Chunk, RetrievedChunk, SearchFilters

RETRIEVERS = ("bm25", "dense", "graph")


@dataclass(frozen=True, slots=True)
class RankedSearch:
    """A search's result (`found`, best first) and each retriever's ranking before fusion (best first)."""

    found: list[RetrievedChunk]
    rankings: dict[str, list[RetrievedChunk]]


class HybridIndex:
    """Everything retrieval knows, kept row-aligned; `search` fuses the retrievers.

    Args:
        embedder: the dense retriever's sentence embedder.
        knowledge: the durable knowledge graph to keep in step (None: graph retrieval from memory only).
        fusion: how rankings are joined (RRF by default).
        depth: candidates each retriever contributes before fusion.
        reranker: an optional cross-encoder stage over the fused candidates.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        knowledge: KnowledgeGraph | None = None,
        fusion: Fusion | None = None,
        depth: int = 50,
        reranker: Reranker | None = None,
    ) -> None:
        self.table = ChunkTable()
        self.bm25 = BM25Index()
        self.dense = DenseIndex(embedder)
        self.graph = EntityGraph()
        self.knowledge = knowledge
        self.fusion = fusion or ReciprocalRankFusion()
        self.depth = depth
        self.reranker = reranker
        self.retrievers: dict[str, Retriever] = {
            "bm25": BM25Retriever(self.table, self.bm25),
            "dense": DenseRetriever(self.table, self.dense),
            "graph": GraphRetriever(self.table, self.graph),
        }

    def __len__(self) -> int:
        return len(self.table)

    # -- writing ---------------------------------------------------------------------------------------------

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Index chunks in every retriever and the knowledge graph. Chunk ids already present are skipped."""
        chunks = [c for c in _unique(chunks) if self.table.row(c.id) is None]
        if not chunks:
            return
        texts = [c.index_text for c in chunks]
        vectors = self.dense.embedder.embed(texts)  # first: the slow, failure-prone step, before any index changes
        mentions = [chunk_entities(c) for c in chunks]
        if self.knowledge is not None:
            self.knowledge.add_chunks([_chunk_mentions(c, m) for c, m in zip(chunks, mentions, strict=True)])
        self.table.append(chunks)
        self.bm25.add(texts)
        self.dense.add_vectors(vectors)
        self.graph.add(mentions)

    def remove_sources(self, sources: Sequence[str], tenant: str = DEFAULT_TENANT) -> int:
        """Remove every chunk of `sources` (in `tenant`) from every retriever and the graph; returns how many."""
        gone = self.table.rows_of_sources(sources, tenant)
        if not gone.any():
            return 0
        if self.knowledge is not None:
            self.knowledge.remove_chunks([self.table.chunks[r].id for r in np.flatnonzero(gone)])
        keep = ~gone
        for part in (self.bm25, self.dense, self.graph, self.table):
            part.keep(keep)
        return int(gone.sum())

    def remove_tenant(self, tenant: str) -> int:
        """Remove every document of `tenant` from every retriever and the graph; returns how many chunks went."""
        return self.remove_sources(list(self.table.sources(tenant)), tenant)

    def sources(self, tenant: str = DEFAULT_TENANT) -> dict[str, str]:
        """Indexed sources of `tenant` and the content hash each was indexed at."""
        return self.table.sources(tenant)

    # -- reading ---------------------------------------------------------------------------------------------

    def retrieve_each(
        self, query: str, k: int, filters: SearchFilters | None = None, retrievers: Sequence[str] = RETRIEVERS
    ) -> dict[str, list[RetrievedChunk]]:
        """Each named retriever's own top `k`, filters applied inside each."""
        return {name: self.retrievers[name].retrieve(query, k, filters) for name in retrievers}

    def search(
        self,
        query: str,
        k: int = 5,
        filters: SearchFilters | None = None,
        *,
        retrievers: Sequence[str] = RETRIEVERS,
        fusion: Fusion | None = None,
    ) -> list[RetrievedChunk]:
        """The `k` best chunks by fusion of `retrievers` (each contributing its top `depth`), reranked if set."""
        return self.ranked_search(query, k, filters, retrievers=retrievers, fusion=fusion).found

    def ranked_search(
        self,
        query: str,
        k: int = 5,
        filters: SearchFilters | None = None,
        *,
        retrievers: Sequence[str] = RETRIEVERS,
        fusion: Fusion | None = None,
    ) -> RankedSearch:
        """`search`'s chunks, with each retriever's own ranking they were fused from (what a trace explains)."""
        query = clip_query(query)
        if not query:
            return RankedSearch([], {})
        rankings = self.retrieve_each(query, max(self.depth, k), filters, retrievers)
        scale = {name: self.retrievers[name].confidence(query) for name in retrievers}
        fused = (fusion or self.fusion).fuse(rankings, max(k, self.reranker.depth if self.reranker else k), scale)
        if self.reranker is not None:
            fused = self.reranker.rerank(query, fused)
        return RankedSearch(fused[:k], rankings)

    def similarity(self, query: str, found: Sequence[RetrievedChunk]) -> list[float]:
        """Cosine similarity of the query to each found chunk (the dense retriever's calibrated-ish score)."""
        rows = [self.table.row(r.id) for r in found]
        if not found:
            return []
        scores = self.dense.scores(self.dense.embed_query(clip_query(query)))
        return [float(scores[r]) if r is not None else 0.0 for r in rows]

    # -- persistence -----------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write a new version under `directory` and make it live atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        previous = _live_version(directory)
        number = int(previous.name[1:]) + 1 if previous else 1
        version = directory / f"v{number:06d}"
        shutil.rmtree(version, ignore_errors=True)
        version.mkdir()
        self.table.save(version / "chunks.jsonl")
        self.bm25.save(version)
        self.dense.save(version)
        pointer = directory / "CURRENT.tmp"
        pointer.write_text(version.name)
        os.replace(pointer, directory / "CURRENT")
        for old in directory.glob("v[0-9]*"):
            if old != version:
                shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path, embedder: Embedder, **kwargs: object) -> HybridIndex:
        """Open the live version under `directory` (an empty index if there is none yet).

        The knowledge graph is reconciled with the chunk table: chunks a crash left in only one of them are
        added to or removed from the graph, so the two always agree after loading.
        """
        index = cls(embedder, **kwargs)  # type: ignore[arg-type]
        version = _live_version(directory)
        if version is None:
            return index
        table = ChunkTable.load(version / "chunks.jsonl")
        index.table.append(table.chunks)
        index.bm25 = BM25Index.load(version)
        index.dense = DenseIndex.load(version, embedder)
        index.retrievers["bm25"] = BM25Retriever(index.table, index.bm25)
        index.retrievers["dense"] = DenseRetriever(index.table, index.dense)
        index._load_graph()
        return index

    def _load_graph(self) -> None:
        if self.knowledge is None:
            self.graph.add([chunk_entities(c) for c in self.table])
            return
        stored: dict[str, list[tuple[str, int]]] = {}
        for chunk_id, entity, count in self.knowledge.mentions():
            stored.setdefault(chunk_id, []).append((entity, count))
        orphans = set(stored) - {c.id for c in self.table}
        if orphans:
            self.knowledge.remove_chunks(sorted(orphans))
        missing = [c for c in self.table if c.id not in stored]
        missing_mentions = {c.id: chunk_entities(c) for c in missing}
        if missing:
            self.knowledge.add_chunks([_chunk_mentions(c, missing_mentions[c.id]) for c in missing])
        for c in self.table:
            if c.id in missing_mentions:
                self.graph.add([missing_mentions[c.id]])
            else:
                self.graph.add_counts(stored[c.id])


def read_table(directory: Path) -> ChunkTable:
    """The live version's chunk table alone (empty when nothing is indexed): what listing documents needs, without
    the embedder, the retrievers or the graph store."""
    version = _live_version(directory)
    return ChunkTable.load(version / "chunks.jsonl") if version is not None else ChunkTable()


def live_version(directory: Path) -> str | None:
    """The name of the live version folder (None: nothing indexed yet); it changes with every save."""
    version = _live_version(directory)
    return version.name if version is not None else None


def _live_version(directory: Path) -> Path | None:
    pointer = directory / "CURRENT"
    if not pointer.exists():
        return None
    version = directory / pointer.read_text().strip()
    return version if version.is_dir() else None


def _unique(chunks: Sequence[Chunk]) -> list[Chunk]:
    seen: set[str] = set()
    return [c for c in chunks if not (c.id in seen or seen.add(c.id))]  # type: ignore[func-returns-value]


def chunk_entities(chunk: Chunk) -> list[Entity]:
    """A chunk's entities; the top of its heading path is its document's title."""
    return extract(chunk.text, title=chunk.heading_path[0] if chunk.heading_path else None)


def _chunk_mentions(chunk: Chunk, entities: Sequence[Entity]) -> ChunkMentions:
    mentions = tuple(EntityMention(e.id, e.name, e.kind, e.count) for e in entities)
    return ChunkMentions(chunk.id, chunk.tenant, chunk.source, mentions)
