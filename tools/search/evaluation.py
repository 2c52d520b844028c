"""Retrieval quality on a BEIR-layout folder: nDCG@10, Recall@5/@20 and MRR per retriever, latency, ingest speed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chimera.errors import ChimeraError
from chimera.jsonl import json_objects
from chimera.tools.search.types import RetrievedChunk, Section

if TYPE_CHECKING:
    from chimera.tools.ingest.pipeline import Ingestor
    from chimera.tools.search.index import HybridIndex

RANK_DEPTH = 100


class BeirFormatError(ChimeraError):
    """A BEIR folder is missing a file or has a malformed line (the message says file:line)."""


@dataclass(frozen=True, slots=True)
class BeirDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """A BEIR folder: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv` (queries without judgements are dropped)."""

    name: str
    corpus_path: Path
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]

    def documents(self) -> Iterator[BeirDocument]:
        """The corpus, streamed."""
        for number, record in json_objects(self.corpus_path, BeirFormatError):
            if "_id" not in record or "text" not in record:
                raise BeirFormatError(f"{self.corpus_path}:{number}: a document needs `_id` and `text`")
            yield BeirDocument(str(record["_id"]), str(record.get("title") or ""), str(record["text"]))


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder's queries and judgements (the corpus is streamed later).

    Raises:
        BeirFormatError: a file is missing or a line is malformed.
    """
    corpus = directory / "corpus.jsonl"
    queries_path = directory / "queries.jsonl"
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for path in (corpus, queries_path, qrels_path):
        if not path.is_file():
            raise BeirFormatError(f"{directory} is not a BEIR folder: {path.relative_to(directory)} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\n").split("\t")
            if (number == 1 and fields[0] == "query-id") or not line.strip():
                continue
            if len(fields) != 3:
                raise BeirFormatError(f"{qrels_path}:{number}: expected query-id<TAB>corpus-id<TAB>score")
            try:
                score = int(fields[2])
            except ValueError as e:
                raise BeirFormatError(f"{qrels_path}:{number}: score {fields[2]!r} is not an integer") from e
            if score > 0:
                qrels.setdefault(fields[0], {})[fields[1]] = score
    queries: dict[str, str] = {}
    for number, record in json_objects(queries_path, BeirFormatError):
        if "_id" not in record or "text" not in record:
            raise BeirFormatError(f"{queries_path}:{number}: a query needs `_id` and `text`")
        if str(record["_id"]) in qrels:
            queries[str(record["_id"])] = str(record["text"])
    if not queries:
        raise BeirFormatError(f"{directory}: no query of queries.jsonl has a judgement in {qrels_path.name}")
    return BeirDataset(directory.name, corpus, queries, {q: qrels[q] for q in queries})


def ranked_documents(chunks: Sequence[RetrievedChunk]) -> list[str]:
    """Document ids in order of their best chunk (a document's score is its best chunk's)."""
    seen: dict[str, None] = {}
    for c in chunks:
        seen.setdefault(c.chunk.doc_id, None)
    return list(seen)


def ndcg_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def recall_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    return len(set(ranking[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank(ranking: Sequence[str], relevant: Mapping[str, int]) -> float:
    return next((1.0 / (i + 1) for i, d in enumerate(ranking) if d in relevant), 0.0)


def score_rankings(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@5, Recall@20 and MRR of per-query document rankings."""
    rows = [
        (ndcg_at(r, qrels[q], 10), recall_at(r, qrels[q], 5), recall_at(r, qrels[q], 20), reciprocal_rank(r, qrels[q]))
        for q, r in rankings.items()
    ]
    means = np.mean(np.array(rows), axis=0) if rows else np.zeros(4)
    return {
        name: round(float(v), 4) for name, v in zip(("ndcg@10", "recall@5", "recall@20", "mrr"), means, strict=True)
    }


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def evaluate_beir(
    dataset: BeirDataset,
    index: HybridIndex,
    ingestor: Ingestor,
    *,
    max_queries: int | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Ingest `dataset`'s corpus into the (empty) `index` through `ingestor`, then score every retriever.

    Returns the report: `dataset`, `retrievers` (bm25, dense, graph, fused, and fused without the graph, each with
    ndcg@10, recall@5, recall@20, mrr), `latency_ms` of the fused query (p50, p99), `ingest_chunks_per_s`.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    chunks = 0
    for doc in tqdm(dataset.documents(), desc="ingest", unit="doc", disable=not progress):
        heading = (doc.title,) if doc.title else ()
        chunks += ingestor.add_document(doc.id, [Section(doc.text, heading_path=heading)])
    ingestor.flush()
    ingest_s = time.perf_counter() - start

    names = ("bm25", "dense", "graph")
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in (*names, "fused", "fused_no_graph")}
    latencies = []
    queries = list(dataset.queries.items())[:max_queries]
    for qid, text in tqdm(queries, desc="query", unit="query", disable=not progress):
        # The fused query first, so that its time includes embedding the query (later calls reuse the vector).
        fused, seconds = timed(lambda text=text: index.search(text, RANK_DEPTH))  # type: ignore[misc]
        latencies.append(seconds)
        runs["fused"][qid] = ranked_documents(fused)  # type: ignore[arg-type]
        for name, found in index.retrieve_each(text, RANK_DEPTH, retrievers=names).items():
            runs[name][qid] = ranked_documents(found)
        no_graph = index.search(text, RANK_DEPTH, retrievers=("bm25", "dense"))
        runs["fused_no_graph"][qid] = ranked_documents(no_graph)
    return {
        "dataset": dataset.name,
        "queries": len(queries),
        "documents": len({c.doc_id for c in index.table}),
        "chunks": chunks,
        "retrievers": {name: score_rankings(run, dataset.qrels) for name, run in runs.items()},
        "latency_ms": percentiles_ms(latencies),
        "ingest_chunks_per_s": round(chunks / ingest_s, 1) if ingest_s else 0.0,
        "ingest_seconds": round(ingest_s, 1),
    }


def format_report(report: Mapping[str, object]) -> str:
    """The report as a table for a terminal."""
    lines = [
        f"{report['dataset']}: {report['queries']} queries, {report['documents']} documents, {report['chunks']} chunks",
        f"{'retriever':<16}{'nDCG@10':>9}{'R@5':>8}{'R@20':>8}{'MRR':>8}",
    ]
    for name, m in report["retrievers"].items():  # type: ignore[attr-defined]
        lines.append(f"{name:<16}{m['ndcg@10']:>9.4f}{m['recall@5']:>8.4f}{m['recall@20']:>8.4f}{m['mrr']:>8.4f}")
    latency = report["latency_ms"]
    lines.append(f"fused query latency p50 {latency['p50']} ms, p99 {latency['p99']} ms")  # type: ignore[index]
    lines.append(f"ingest {report['ingest_chunks_per_s']} chunks/s")
    return "\n".join(lines)
