"""The `Retriever` contract on the three retrievers of the hybrid index: BM25, dense (the packaged MiniLM's static
word-piece vectors: the same index code as the sentence embedder, no transformer to load) and the entity graph."""

from collections.abc import Callable

import pytest

from chimera.models.embedding.minilm import StaticEmbedder
from chimera.tools.search.base import Retriever
from chimera.tools.search.bm25 import BM25Index
from chimera.tools.search.dense import DenseIndex
from chimera.tools.search.entity_graph import EntityGraph
from chimera.tools.search.index import chunk_entities
from chimera.tools.search.retrievers import BM25Retriever, DenseRetriever, GraphRetriever
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import Chunk
from tests.contracts.retriever import RetrieverContract

MakeRetriever = Callable[[list[Chunk]], Retriever]


def _table(chunks: list[Chunk]) -> ChunkTable:
    table = ChunkTable()
    table.append(chunks)
    return table


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


class TestBM25Retriever(RetrieverContract):
    @pytest.fixture
    def make_retriever(self) -> MakeRetriever:
        def make(chunks: list[Chunk]) -> Retriever:
            index = BM25Index()
            index.add([c.index_text for c in chunks])
            return BM25Retriever(_table(chunks), index)

        return make


class TestDenseRetriever(RetrieverContract):
    matches_any_text = True

    @pytest.fixture
    def make_retriever(self, embedder: StaticEmbedder) -> MakeRetriever:
        def make(chunks: list[Chunk]) -> Retriever:
            index = DenseIndex(embedder)
            index.add([c.index_text for c in chunks])
            return DenseRetriever(_table(chunks), index)

        return make


class TestGraphRetriever(RetrieverContract):
    @pytest.fixture
    def make_retriever(self) -> MakeRetriever:
        def make(chunks: list[Chunk]) -> Retriever:
            graph = EntityGraph()
            graph.add([chunk_entities(c) for c in chunks])
            return GraphRetriever(_table(chunks), graph)

        return make
