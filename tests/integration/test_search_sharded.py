"""Two index shards in Ray actors rank exactly like one unsharded index."""

import inspect
from collections.abc import Iterator

import numpy as np
import pytest

from chimera.models.router.embedder import SentenceEmbedder
from chimera.tools.search.index import HybridIndex
from chimera.tools.search.sharded import ShardedIndex
from chimera.tools.search.types import Chunk, SearchFilters

pytestmark = pytest.mark.integration

QUERIES = [
    "read lines from a file",
    "thread synchronisation with a lock",
    "Which city hosts the Zephyr office led by Ingrid Halvorsen?",
    "parse command line arguments",
    "compress data with zlib",
]


def corpus() -> list[Chunk]:
    """Real prose (standard-library docstrings) in two tenants, plus a small web of named entities."""
    import argparse
    import json
    import logging
    import pathlib
    import threading
    import zlib

    texts = [
        inspect.getdoc(member) or ""
        for module in (argparse, json, logging, pathlib, threading, zlib)
        for _, member in inspect.getmembers(module)
        if callable(member) and len(inspect.getdoc(member) or "") > 80
    ]
    texts = texts[:150]
    texts += [
        "The Zephyr project is led by Ingrid Halvorsen from the Oslo office.",
        "Ingrid Halvorsen joined Nordlys Energy in 2019 after a decade at Statkraft.",
        "The Oslo office of Nordlys Energy sits next to the Aker Brygge harbour.",
    ]
    chunks = []
    for i, text in enumerate(dict.fromkeys(texts)):
        tenant = "a" if i % 3 else "b"
        source = f"/docs/{tenant}/doc{i // 2}.txt"  # two chunks per document, so documents stay whole per shard
        chunks.append(Chunk(Chunk.make_id(tenant, source, i, text), source, text, source, i % 2, "h", tenant=tenant))
    return chunks


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="chimera-test-shards")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def indexes(ray_local: None) -> tuple[HybridIndex, ShardedIndex]:
    chunks = corpus()
    single = HybridIndex(SentenceEmbedder(max_tokens=256))
    single.add(chunks)
    sharded = ShardedIndex(2)
    sharded.add(chunks)
    return single, sharded


def _assert_same(left: list, right: list) -> None:
    assert [r.id for r in left] == [r.id for r in right]
    np.testing.assert_allclose([r.score for r in left], [r.score for r in right], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tenant", ["a", "b"])
def test_two_shards_equal_the_unsharded_index(indexes: tuple[HybridIndex, ShardedIndex], tenant: str) -> None:
    single, sharded = indexes
    filters = SearchFilters(tenant=tenant)
    for query in QUERIES:
        each_single = single.retrieve_each(query, 20, filters)
        each_sharded = sharded.retrieve_each(query, 20, filters)
        for name in ("bm25", "dense", "graph"):
            _assert_same(each_single[name], each_sharded[name])
        _assert_same(single.search(query, 10, filters), sharded.search(query, 10, filters))


def test_both_shards_hold_data_and_the_graph_crosses_them(indexes: tuple[HybridIndex, ShardedIndex]) -> None:
    _, sharded = indexes
    import ray

    sizes = ray.get([s.stats.remote() for s in sharded.shards])
    assert all(s.n_docs > 10 for s in sizes)
    found = sharded.retrieve_each("Where is the office of Ingrid Halvorsen?", 5, SearchFilters(tenant="a"))
    assert found["graph"], "the entity walk found nothing"


def test_removal_keeps_them_equal(indexes: tuple[HybridIndex, ShardedIndex]) -> None:
    single, sharded = indexes
    gone = sorted({c.source for c in single.table if c.tenant == "a"})[:5]
    assert single.remove_sources(gone, "a") == sharded.remove_sources(gone, "a") > 0
    for query in QUERIES:
        _assert_same(
            single.search(query, 10, SearchFilters(tenant="a")), sharded.search(query, 10, SearchFilters(tenant="a"))
        )
