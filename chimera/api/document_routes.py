"""The indexed documents of the caller's tenant: GET /v1/documents (paged), GET /v1/documents/{source} (its chunks),
DELETE /v1/documents/{source} (from every index and the knowledge graph; admin keys, as ingestion).

A source is the document's path as ingested (URL-encode it: `%2F` for each `/`). Documents of another tenant, and
those whose ACL groups the caller shares none of, are unknown (404); an admin key sees every document of its
tenant and may name another with `tenant=`.
"""

from typing import Any

from fastapi import APIRouter, Request

from chimera.api.errors import APIError
from chimera.documents import DocumentService, chunk_json, document_json

router = APIRouter()
PAGE_MAX = 100


def _documents(request: Request) -> DocumentService:
    service: DocumentService = request.app.state.documents
    return service


def _page_limit(value: str) -> int:
    """`limit` as a number of documents; read here (not by FastAPI) so that a bad one is a 400 in OpenAI's shape."""
    if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
        raise APIError(400, f"limit must be an integer between 1 and {PAGE_MAX}", param="limit", code="invalid_value")
    return int(value)


@router.get("/v1/documents")
async def list_documents(
    request: Request, limit: str = "20", after: str | None = None, tenant: str | None = None
) -> dict[str, Any]:
    """The tenant's indexed documents ordered by source, each with its chunk count and ingestion time; `after`
    (the last source of a page) pages on."""
    size = _page_limit(limit)
    found, more = await _documents(request).list(request.state.principal, limit=size, after=after, tenant=tenant)
    first, last = (found[0].source, found[-1].source) if found else (None, None)
    data = [document_json(d) for d in found]
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more}


@router.get("/v1/documents/{source:path}")
async def get_document(source: str, request: Request, tenant: str | None = None) -> dict[str, Any]:
    """The document and its chunks in document order."""
    doc, chunks = await _documents(request).get(source, request.state.principal, tenant=tenant)
    return {**document_json(doc), "chunks": [chunk_json(c) for c in chunks]}


@router.delete("/v1/documents/{source:path}")
async def delete_document(source: str, request: Request, tenant: str | None = None) -> dict[str, Any]:
    """Remove the document from the BM25, dense and graph indexes and the knowledge graph."""
    doc = await _documents(request).delete(source, request.state.principal, tenant=tenant)
    return {"id": doc.source, "object": "document.deleted", "deleted": True, "tenant": doc.tenant,
            "chunk_count": doc.chunk_count}  # fmt: skip
