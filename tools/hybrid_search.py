"""`hybrid_search`: the agents' way into the company's documents (fused BM25 + dense + graph retrieval)."""

import asyncio
import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from pydantic import BaseModel, Field

from chimera.guardrails.base import DisabledRails, Rails
from chimera.metrics import Metrics
from chimera.tools.base import Scope, SourcedResult, Tool
from chimera.tools.search.index import HybridIndex, RankedSearch
from chimera.tools.search.types import RetrievedChunk, SearchFilters

_tracer = trace.get_tracer("chimera.tools")


class HybridSearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=300, description="What to look for, in a few words.")


class HybridSearch(Tool):
    """Search the ingested documents; passages come back numbered, for the answer to cite.

    Args:
        index: the hybrid index to search, or a callable returning the current one (None: nothing ingested).
        filters: what the caller may see (tenant, groups); applied inside every retriever.
        k: passages per search.
        min_similarity: cosine similarity (dense) a passage needs to ground an answer unasked (see `ground`).
        rails: retrieval rails every passage passes before the agent sees it (default: none).
        metrics: where search times are counted.
    """

    name = "hybrid_search"
    description = "Search the company's documents. Arguments: {'query': 'a few words'}."
    Args = HybridSearchArgs

    def __init__(
        self,
        index: HybridIndex | Callable[[], HybridIndex | None],
        *,
        filters: SearchFilters | None = None,
        k: int = 3,
        min_similarity: float = 0.35,
        rails: Rails | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._index = index if callable(index) else (lambda: index)
        self.filters = filters or SearchFilters()
        self.k = k
        self.min_similarity = min_similarity
        self.rails = rails or DisabledRails()
        self.metrics = metrics or Metrics()
        self._lock = threading.Lock()  # the index is not safe for a search during an ingest

    def available(self) -> bool:
        index = self._index()
        return index is not None and len(index) > 0

    def scoped(self, scope: Scope) -> "HybridSearch":
        """The same index (and lock), seeing only the chunks `scope.filters` admit."""
        other = copy.copy(self)
        other.filters = scope.filters
        return other

    async def run(self, args: HybridSearchArgs) -> str | SourcedResult:
        passages = await self._guarded(await asyncio.to_thread(self._search, args.query))
        if not passages:
            return f"no passage of the documents matches {args.query!r}"
        return SourcedResult(tuple(passages))

    async def ground(self, question: str) -> SourcedResult | None:
        """Passages for a question nobody asked to search: only those semantically close to it, or None."""
        found = await asyncio.to_thread(self._ground, question)
        passages = await self._guarded(list(found.passages)) if found else []
        return SourcedResult(tuple(passages)) if passages else None

    async def _guarded(self, passages: list[RetrievedChunk]) -> list[RetrievedChunk]:
        """The passages the retrieval rails keep, with their text as the rails left it (PII masked)."""
        if not passages or not self.rails.enabled:
            return passages
        verdicts = await self.rails.check_retrieval([p.text for p in passages])
        return [
            p if v.text == p.text else dataclasses.replace(p, chunk=dataclasses.replace(p.chunk, text=v.text or ""))
            for p, v in zip(passages, verdicts, strict=True)
            if v.allowed
        ]

    def _ground(self, question: str) -> SourcedResult | None:
        with self._lock:
            index = self._index()
            if index is None or not len(index):
                return None
            with _tracer.start_as_current_span("retrieval.search") as span:
                found = self._ranked(span, index, question, "ground")
                similarity = index.similarity(question, found)
                close = [p for p, sim in zip(found, similarity, strict=True) if sim >= self.min_similarity]
                span.set_attributes({"chimera.retrieval.min_similarity": self.min_similarity,
                                     "chimera.retrieval.kept": json.dumps([p.id for p in close])})  # fmt: skip
        return SourcedResult(tuple(close)) if close else None

    def _search(self, query: str) -> list[RetrievedChunk]:
        with self._lock:
            index = self._index()
            if index is None:
                return []
            with _tracer.start_as_current_span("retrieval.search") as span:
                return self._ranked(span, index, query, "search")

    def _ranked(self, span: trace.Span, index: HybridIndex, query: str, kind: str) -> list[RetrievedChunk]:
        """The search, timed, with each retriever's ranks and the fused order on `span`."""
        started = time.perf_counter()
        ranked = index.ranked_search(query, self.k, self.filters)
        self.metrics.searched(kind, time.perf_counter() - started)
        span.set_attributes({"chimera.retrieval.kind": kind, **ranks_attributes(ranked, self.k)})
        return ranked.found


def ranks_attributes(ranked: RankedSearch, k: int) -> dict[str, str | int]:
    """Span attributes explaining a search: the fused order (`chimera.retrieval.fused`) and, per retriever,
    `chimera.retrieval.<retriever>.ranks`: its top `k` and wherever it ranked a chunk that was returned. JSON lists
    of `{rank, chunk, score, source, page}`; chunk ids, never text (the passages' text is on the tool's span)."""
    returned = {r.id for r in ranked.found}
    attributes: dict[str, str | int] = {"chimera.retrieval.k": k, "chimera.retrieval.fused": _ranks(ranked.found)}
    if ranked.found:
        attributes["chimera.retrieval.fusion"] = ranked.found[0].retriever
    for name, ranking in ranked.rankings.items():
        kept = [(rank, r) for rank, r in enumerate(ranking, start=1) if rank <= k or r.id in returned]
        attributes[f"chimera.retrieval.{name}.ranks"] = _ranks([r for _, r in kept], [rank for rank, _ in kept])
    return attributes


def _ranks(found: Sequence[RetrievedChunk], ranks: Sequence[int] | None = None) -> str:
    return json.dumps(
        [
            {"rank": rank, "chunk": r.id, "score": round(r.score, 5), "source": r.source, "page": r.chunk.page}
            for rank, r in zip(range(1, len(found) + 1) if ranks is None else ranks, found, strict=True)
        ]
    )
