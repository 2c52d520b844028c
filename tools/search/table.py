"""The chunk table: every indexed chunk in row order, and filter masks over the rows.

The BM25, dense and graph indexes are row-aligned with this table, so a filter is one boolean mask that every
retriever applies before it takes its top k.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from chimera.tools.search.types import DEFAULT_TENANT, Chunk, DocumentInfo, SearchFilters


class ChunkTable:
    """Chunks in row order, with the columns filters need as arrays."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self._row_of: dict[str, int] = {}
        self._tenant_codes: dict[str, int] = {}
        self._tenants = np.zeros(0, dtype=np.int32)  # (N,) code of each row's tenant
        self._acl_rows: dict[int, frozenset[str]] = {}
        self._rows_by_source: dict[tuple[str, str], list[int]] = {}

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.chunks)

    def row(self, chunk_id: str) -> int | None:
        """The row of a chunk id, or None."""
        return self._row_of.get(chunk_id)

    def append(self, chunks: Sequence[Chunk]) -> None:
        """Add chunks as new rows."""
        start = len(self.chunks)
        codes = np.empty(len(chunks), dtype=np.int32)
        for i, chunk in enumerate(chunks):
            self._row_of[chunk.id] = start + i
            codes[i] = self._tenant_codes.setdefault(chunk.tenant, len(self._tenant_codes))
            if chunk.acl:
                self._acl_rows[start + i] = frozenset(chunk.acl)
            self._rows_by_source.setdefault((chunk.tenant, chunk.source), []).append(start + i)
        self.chunks.extend(chunks)
        self._tenants = np.concatenate([self._tenants, codes])

    def keep(self, mask: np.ndarray) -> None:
        """Drop every row where `mask` is False."""
        kept = [c for c, k in zip(self.chunks, mask, strict=True) if k]
        self.chunks = []
        self._row_of, self._acl_rows, self._rows_by_source = {}, {}, {}
        self._tenants = np.zeros(0, dtype=np.int32)
        self.append(kept)

    def sources(self, tenant: str) -> dict[str, str]:
        """Sources of `tenant` in the table, with the content hash each was indexed at."""
        return {s: self.chunks[rows[0]].content_hash for (t, s), rows in self._rows_by_source.items() if t == tenant}

    def documents(self, tenant: str | None = None) -> list[DocumentInfo]:
        """The documents of `tenant` (None: of every tenant), ordered by tenant, then source."""
        found = []
        for (t, source), rows in self._rows_by_source.items():
            if tenant is None or t == tenant:
                first = self.chunks[rows[0]]
                found.append(
                    DocumentInfo(source, first.doc_id, t, first.acl, len(rows), first.content_hash,
                                 first.ingested_at, first.metadata)
                )  # fmt: skip
        return sorted(found, key=lambda d: (d.tenant, d.source))

    def chunks_of(self, source: str, tenant: str) -> list[Chunk]:
        """The chunks of one document, in document order."""
        return sorted((self.chunks[r] for r in self._rows_by_source.get((tenant, source), [])), key=lambda c: c.ordinal)

    def rows_of_sources(self, sources: Iterable[str], tenant: str) -> np.ndarray:
        """Boolean mask of the rows that came from any of `sources` in `tenant`.  # (N,)"""
        mask = np.zeros(len(self.chunks), dtype=bool)
        for source in sources:
            mask[self._rows_by_source.get((tenant, source), [])] = True
        return mask

    def mask(self, filters: SearchFilters) -> np.ndarray:
        """Rows a query with `filters` may see.  # (N,) bool"""
        code = self._tenant_codes.get(filters.tenant or DEFAULT_TENANT)
        if code is None:
            return np.zeros(len(self.chunks), dtype=bool)
        allowed = self._tenants == code
        for row, tags in self._acl_rows.items():
            if allowed[row] and (filters.acl is None or not tags & filters.acl):
                allowed[row] = False
        if filters.sources or filters.metadata:
            for row in np.flatnonzero(allowed):
                allowed[row] = filters.admits(self.chunks[row])
        return allowed

    def save(self, path: Path) -> None:
        """Write the chunks as JSON lines."""
        with path.open("w", encoding="utf-8") as f:
            for c in self.chunks:
                record = {
                    "id": c.id, "doc_id": c.doc_id, "text": c.text, "source": c.source, "ordinal": c.ordinal,
                    "content_hash": c.content_hash, "page": c.page, "heading_path": list(c.heading_path),
                    "tenant": c.tenant, "acl": list(c.acl), "metadata": dict(c.metadata),
                    "ingested_at": c.ingested_at,
                }  # fmt: skip
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ChunkTable:
        """Read chunks written by `save`."""
        table = cls()
        chunks = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                r["heading_path"] = tuple(r["heading_path"])
                r["acl"] = tuple(r["acl"])
                r["metadata"] = MappingProxyType(r["metadata"])
                chunks.append(Chunk(**r))
        table.append(chunks)
        return table
