"""Builds the search stack from the config: embedder, graph store, index, ingestor."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chimera.config import SearchConfig
from chimera.errors import ConfigError
from chimera.memory.graph.base import GraphStore
from chimera.memory.graph.knowledge import KnowledgeGraph
from chimera.models.embedding.base import EmbedderError
from chimera.models.embedding.minilm import SentenceEmbedder, packaged_model_dir
from chimera.tools.ingest.chunking import Chunker, wordpiece_counter
from chimera.tools.ingest.pipeline import Ingestor
from chimera.tools.search.fusion import Fusion, ReciprocalRankFusion, WeightedScoreFusion
from chimera.tools.search.index import HybridIndex
from chimera.tools.search.rerank import Reranker

PACKAGED_EMBEDDER = "packaged:all-minilm-l6-v2"


def embedding_model_dir(config: SearchConfig) -> Path:
    """The local folder of the configured embedding model."""
    if config.embedding_model == PACKAGED_EMBEDDER:
        return packaged_model_dir()
    folder = Path(config.embedding_model)
    if not (folder / "config.json").is_file():
        raise EmbedderError(f"search.embedding_model {folder} is not a local sentence-transformers folder")
    return folder


def build_fusion(config: SearchConfig) -> Fusion:
    """The configured fusion, with the configured weights."""
    if config.fusion == "weighted":
        return WeightedScoreFusion(config.weights)
    return ReciprocalRankFusion(config.weights, k=config.rrf_k)


def open_graph_store(config: SearchConfig, index_dir: Path) -> GraphStore:
    """Neo4j when a URI is configured (or NEO4J_URI is set), else the embedded store under the index dir."""
    if config.graph_store == "neo4j":
        from chimera.memory.graph.neo4j_store import Neo4jGraphStore

        if not config.neo4j_uri:
            raise ConfigError("search.graph_store is neo4j but no neo4j_uri / NEO4J_URI is set")
        return Neo4jGraphStore(
            config.neo4j_uri, os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", "neo4j")
        )
    from chimera.memory.graph.ladybug_store import LadybugGraphStore

    index_dir.mkdir(parents=True, exist_ok=True)
    return LadybugGraphStore(index_dir / "graph")


@contextmanager
def open_index(config: SearchConfig, index_dir: Path) -> Iterator[HybridIndex]:
    """The index under `index_dir` with its knowledge graph, open for the `with` block."""
    store = open_graph_store(config, index_dir)
    try:
        yield load_index(config, index_dir, KnowledgeGraph(store))
    finally:
        store.close()


def load_index(config: SearchConfig, index_dir: Path, knowledge: KnowledgeGraph | None) -> HybridIndex:
    """Load (or start) the index under `index_dir`; `knowledge` None: searching only, the graph store untouched.

    A server searches without holding the embedded graph store, which allows one process at a time: `chimera
    ingest` can then run beside it.
    """
    embedder = SentenceEmbedder(embedding_model_dir(config), max_tokens=config.embedding_max_tokens)
    reranker = Reranker(config.reranker_model, depth=config.rerank_depth) if config.reranker_model else None
    return HybridIndex.load(
        index_dir,
        embedder,
        knowledge=knowledge,
        fusion=build_fusion(config),
        depth=config.depth,
        reranker=reranker,
    )


def build_ingestor(config: SearchConfig, index: HybridIndex, index_dir: Path | None) -> Ingestor:
    """An ingestor writing `index`, chunking with the embedding model's own tokenizer."""
    chunker = Chunker(
        wordpiece_counter(embedding_model_dir(config)),
        max_tokens=config.chunk_tokens,
        overlap_tokens=config.chunk_overlap_tokens,
    )
    return Ingestor(index, chunker, index_dir=index_dir, max_file_bytes=config.max_file_bytes)


class LiveIndex:
    """The index as `chimera ingest` last saved it: reloaded (read-only) when a newer version goes live.

    The server holds this instead of a fixed index, so documents ingested while it runs are searchable at the
    next query without a restart.
    """

    def __init__(self, config: SearchConfig, index_dir: Path) -> None:
        self.config = config
        self.index_dir = index_dir
        self._version: str | None = None
        self._index: HybridIndex | None = None
        self._lock = threading.Lock()

    def get(self) -> HybridIndex | None:
        """The current index, or None while nothing has been ingested."""
        pointer = self.index_dir / "CURRENT"
        version = pointer.read_text().strip() if pointer.exists() else None
        with self._lock:
            if version != self._version:
                self._index = load_index(self.config, self.index_dir, None) if version else None
                if self._index is not None:
                    self._index.dense.embed_query("warm-up")  # load the embedding model now, not in a question
                self._version = version
            return self._index
