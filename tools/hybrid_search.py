"""`hybrid_search`: the agents' way into the company's documents (fused BM25 + dense + graph retrieval)."""

import asyncio
import copy
import dataclasses
import threading
from collections.abc import Callable

from pydantic import BaseModel, Field

from chimera.guardrails.base import DisabledRails, Rails
from chimera.tools.base import Scope, SourcedResult, Tool
from chimera.tools.search.index import HybridIndex
from chimera.tools.search.types import RetrievedChunk, SearchFilters


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
    ) -> None:
        self._index = index if callable(index) else (lambda: index)
        self.filters = filters or SearchFilters()
        self.k = k
        self.min_similarity = min_similarity
        self.rails = rails or DisabledRails()
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
            found = index.search(question, self.k, self.filters)
            close = [
                p for p, sim in zip(found, index.similarity(question, found), strict=True) if sim >= self.min_similarity
            ]
        return SourcedResult(tuple(close)) if close else None

    def _search(self, query: str) -> list[RetrievedChunk]:
        with self._lock:
            index = self._index()
            return index.search(query, self.k, self.filters) if index is not None else []
