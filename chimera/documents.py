"""What is indexed, per tenant: documents listed, one read (its chunks), one deleted from every index and the
knowledge graph. `chimera docs` calls the functions; the documents API calls `DocumentService`, which scopes them
to the caller (its tenant and groups; admins may name another tenant).

A deletion writes the index as `chimera ingest` does: it opens the embedded graph store, so the API takes the
ingestion tasks' Redis lock first (the store admits one writer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from chimera.config import SearchConfig
from chimera.errors import ChimeraError
from chimera.identity.audit import audit
from chimera.identity.principal import Principal
from chimera.tools.search.index import live_version, read_table
from chimera.tools.search.table import ChunkTable
from chimera.tools.search.types import Chunk, DocumentInfo

INGEST_LOCK = "chimera:ingest-lock"  # held by whoever writes the shared index (ingestion tasks, API deletions)


class DocumentError(ChimeraError):
    """A documents request that cannot be answered."""


class DocumentNotFoundError(DocumentError):
    """No such document (in the tenants the caller may see)."""


class AmbiguousDocumentError(DocumentError):
    """The source is indexed in several tenants and none was named."""


class DocumentPermissionError(DocumentError):
    """The caller may not act on another tenant's documents, or delete any; `param` names the field at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class IndexBusyError(DocumentError):
    """Another writer held the index for too long."""


def find_document(table: ChunkTable, source: str, tenant: str | None = None) -> DocumentInfo:
    """The document indexed from `source` in `tenant` (None: in whichever tenant has it).

    Raises:
        DocumentNotFoundError, AmbiguousDocumentError: indexed in several tenants and `tenant` is None.
    """
    found = [d for d in table.documents(tenant) if d.source == source]
    if not found:
        where = f" in tenant {tenant}" if tenant is not None else ""
        raise DocumentNotFoundError(f"no indexed document {source}{where}")
    if len(found) > 1:
        tenants = ", ".join(d.tenant for d in found)
        raise AmbiguousDocumentError(f"{source} is indexed in tenants {tenants}: name one with --tenant")
    return found[0]


def delete_documents(search: SearchConfig, index_dir: Path, documents: Sequence[DocumentInfo]) -> int:
    """Remove documents from BM25, dense, the entity graph and the knowledge graph, and save a new version;
    returns how many chunks went. The caller holds the index (the graph store admits one writer)."""
    from chimera.tools.search.factory import open_index

    with open_index(search, index_dir) as index:
        removed = sum(index.remove_sources([d.source], d.tenant) for d in documents)
        if removed:
            index.save(index_dir)
    return removed


def wipe_documents(search: SearchConfig, index_dir: Path, tenant: str | None) -> int:
    """Remove every document of `tenant` (None: of every tenant); returns how many chunks went."""
    from chimera.tools.search.factory import open_index

    with open_index(search, index_dir) as index:
        tenants = {c.tenant for c in index.table} if tenant is None else {tenant}
        removed = sum(index.remove_tenant(t) for t in sorted(tenants))
        if removed:
            index.save(index_dir)
    return removed


def document_json(doc: DocumentInfo) -> dict[str, Any]:
    """The wire form of a document (the API's and `chimera docs list --json`'s)."""
    return {"id": doc.source, "object": "document", "source": doc.source, "doc_id": doc.doc_id,
            "tenant": doc.tenant, "acl": list(doc.acl), "chunk_count": doc.chunk_count,
            "content_hash": doc.content_hash, "ingested_at": doc.ingested_at or None,
            "metadata": dict(doc.metadata)}  # fmt: skip


def chunk_json(chunk: Chunk) -> dict[str, Any]:
    """The wire form of one of a document's chunks."""
    return {"id": chunk.id, "ordinal": chunk.ordinal, "page": chunk.page,
            "heading_path": list(chunk.heading_path), "text": chunk.text}  # fmt: skip


class DocumentService:
    """The index's documents as one principal may see them: its tenant's (admins: any tenant's), and of those the
    ones its groups admit (admins: all).

    Args:
        search: the search config (the embedder and graph store a deletion opens).
        index_dir: the index.
        redis_url: where the ingestion lock lives.
        lock_wait_s: how long a deletion waits for a running ingestion before answering 503.
    """

    def __init__(self, search: SearchConfig, index_dir: Path, redis_url: str, *, lock_wait_s: float = 30.0) -> None:
        self.search = search
        self.index_dir = index_dir
        self.redis = aioredis.Redis.from_url(redis_url)
        self.lock_wait_s = lock_wait_s
        self._cached: tuple[str | None, ChunkTable] = (None, ChunkTable())

    async def list(
        self, principal: Principal, *, limit: int, after: str | None = None, tenant: str | None = None
    ) -> tuple[list[DocumentInfo], bool]:
        """The visible documents of the tenant ordered by source, those after `after` (a source), at most `limit`,
        and whether more follow."""
        scope = _tenant(principal, tenant)
        docs = [d for d in (await self._table()).documents(scope) if _visible(d, principal)]
        if after is not None:
            docs = [d for d in docs if d.source > after]
        return docs[:limit], len(docs) > limit

    async def get(
        self, source: str, principal: Principal, *, tenant: str | None = None
    ) -> tuple[DocumentInfo, Sequence[Chunk]]:
        """The document and its chunks in document order.

        Raises:
            DocumentNotFoundError: not indexed, or not visible to `principal`.
            DocumentPermissionError: `tenant` is another tenant and `principal` is no admin.
        """
        table = await self._table()
        doc = self._visible_document(table, source, principal, tenant)
        return doc, table.chunks_of(doc.source, doc.tenant)

    async def delete(self, source: str, principal: Principal, *, tenant: str | None = None) -> DocumentInfo:
        """Remove the document from every index and the knowledge graph.

        Raises:
            DocumentNotFoundError: as `get`.
            DocumentPermissionError: another tenant named by a non-admin, or any deletion by one.
            IndexBusyError: an ingestion held the index for longer than `lock_wait_s`.
        """
        doc = self._visible_document(await self._table(), source, principal, tenant)
        if not principal.is_admin:  # as ingesting: a tenant's documents are shared by all its keys
            raise DocumentPermissionError("deleting documents needs an admin key, as ingesting them does")
        lock = self.redis.lock(INGEST_LOCK, timeout=max(60.0, self.lock_wait_s))
        try:
            if not await lock.acquire(blocking_timeout=self.lock_wait_s):
                raise IndexBusyError(f"the index is being written (ingestion); try again in {self.lock_wait_s:g} s")
        except aioredis.RedisError as e:
            raise IndexBusyError(f"cannot take the index lock: {e}") from e
        renew = asyncio.create_task(_renew(lock, max(60.0, self.lock_wait_s) / 3))
        try:
            current = find_document(await asyncio.to_thread(read_table, self.index_dir), doc.source, doc.tenant)
            await asyncio.to_thread(delete_documents, self.search, self.index_dir, [current])
        finally:
            renew.cancel()
            with contextlib.suppress(ChimeraError, aioredis.RedisError):
                await lock.release()
        audit("document_deleted", principal.id, tenant=doc.tenant, source=doc.source)
        return doc

    async def close(self) -> None:
        await self.redis.aclose()

    def _visible_document(
        self, table: ChunkTable, source: str, principal: Principal, tenant: str | None
    ) -> DocumentInfo:
        scope = _tenant(principal, tenant)
        try:
            doc = find_document(table, source, scope)
        except DocumentNotFoundError:
            raise DocumentNotFoundError(f"no document {source}") from None
        if not _visible(doc, principal):
            raise DocumentNotFoundError(f"no document {source}")  # as unknown as one never indexed
        return doc

    async def _table(self) -> ChunkTable:
        """The live chunk table, read again only when a newer version went live."""
        version = live_version(self.index_dir)
        if version != self._cached[0]:
            table = await asyncio.to_thread(read_table, self.index_dir) if version else ChunkTable()
            self._cached = (version, table)
        return self._cached[1]


def _tenant(principal: Principal, tenant: str | None) -> str:
    if tenant is None or tenant == principal.tenant:
        return principal.tenant
    if not principal.is_admin:
        raise DocumentPermissionError("only an admin key may name another tenant", param="tenant")
    return tenant


def _visible(doc: DocumentInfo, principal: Principal) -> bool:
    return principal.is_admin or doc.visible_to(frozenset(principal.groups))


async def _renew(lock: Any, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await lock.reacquire()
