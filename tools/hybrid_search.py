"""`hybrid_search`: the agents' way into the company's documents (fused BM25 + dense + graph retrieval)."""

import asyncio
import threading

from pydantic import BaseModel, Field

from chimera.tools.base import SourcedResult, Tool
from chimera.tools.search.index import HybridIndex
from chimera.tools.search.types import SearchFilters


class HybridSearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=300, description="What to look for, in a few words.")


class HybridSearch(Tool):
    """Search the ingested documents; passages come back numbered, for the answer to cite.

    Args:
        index: the hybrid index to search.
        filters: what the caller may see (tenant, groups); applied inside every retriever.
        k: passages per search.
    """

    name = "hybrid_search"
    description = "Search the company's documents. Arguments: {'query': 'a few words'}."
    Args = HybridSearchArgs

    def __init__(self, index: HybridIndex, *, filters: SearchFilters | None = None, k: int = 4) -> None:
        self.index = index
        self.filters = filters or SearchFilters()
        self.k = k
        self._lock = threading.Lock()  # the index is not safe for a search during an ingest

    async def run(self, args: HybridSearchArgs) -> str | SourcedResult:
        passages = await asyncio.to_thread(self._search, args.query)
        if not passages:
            return f"no passage of the documents matches {args.query!r}"
        return SourcedResult(tuple(passages))

    def _search(self, query: str) -> list:
        with self._lock:
            return self.index.search(query, self.k, self.filters)
