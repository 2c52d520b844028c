"""`chimera docs list|show|delete|wipe`: what the index holds, per document, and removing it.

A SOURCE is a document's source as `list` prints it (for files, the absolute path they were ingested from); a
relative path is also tried as the absolute path it names. Deleting removes the document's chunks from BM25, the
dense vectors, the entity graph and the knowledge graph, as `chimera ingest --delete` does.
"""

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.config import ChimeraConfig

if TYPE_CHECKING:
    from chimera.tools.search.table import ChunkTable
    from chimera.tools.search.types import DocumentInfo


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `docs` and its subcommands on the top-level subparsers."""
    docs = sub.add_parser("docs", help="list, show, delete or wipe the indexed documents")
    actions = docs.add_subparsers(dest="docs_command", required=True)

    p = actions.add_parser("list", help="each indexed document: tenant, chunks, ingestion time, ACL groups")
    p.add_argument("--tenant", help="only this tenant's documents (default: every tenant's)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_list)

    p = actions.add_parser("show", help="one document's metadata and chunks")
    p.add_argument("source")
    p.add_argument("--tenant", help="the document's tenant (needed when several tenants index the same source)")
    p.add_argument("--json", action="store_true", help="the document and its chunks as one JSON object")
    p.set_defaults(func=_show)

    p = actions.add_parser("delete", help="remove documents from every index and the knowledge graph")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("--tenant", help="the documents' tenant (needed when several tenants index the same source)")
    p.set_defaults(func=_delete)

    p = actions.add_parser("wipe", help="remove every document of a tenant, or of all tenants")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", help="the tenant to wipe")
    scope.add_argument("--all", action="store_true", help="every tenant")
    p.add_argument("--yes", action="store_true", help="really remove them (without it, only say what would go)")
    p.set_defaults(func=_wipe)


def _list(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.documents import document_json
    from chimera.tools.search.index import read_table

    docs = read_table(config.index_dir).documents(args.tenant)
    if args.json:
        for doc in docs:
            print(json.dumps(document_json(doc), ensure_ascii=False))
        return 0
    if not docs:
        print("no documents indexed" + (f" for tenant {args.tenant}" if args.tenant else ""))
        return 0
    width = max(len("TENANT"), *(len(d.tenant) for d in docs))
    print(f"{'TENANT':<{width}}  {'CHUNKS':>6}  {'INGESTED':<19}  {'ACL':<12}  SOURCE")
    for d in docs:
        print(f"{d.tenant:<{width}}  {d.chunk_count:>6}  {_when(d.ingested_at):<19}  {_acl(d):<12}  {d.source}")
    chunks = sum(d.chunk_count for d in docs)
    print(f"{len(docs)} documents, {chunks} chunks")
    return 0


def _show(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.documents import chunk_json, document_json
    from chimera.tools.search.index import read_table

    table = read_table(config.index_dir)
    doc = _find(table, args.source, args.tenant)
    chunks = table.chunks_of(doc.source, doc.tenant)
    if args.json:
        print(json.dumps({**document_json(doc), "chunks": [chunk_json(c) for c in chunks]}, ensure_ascii=False))
        return 0
    print(f"source      {doc.source}")
    print(f"tenant      {doc.tenant}")
    print(f"acl         {_acl(doc)}")
    print(f"chunks      {doc.chunk_count}")
    print(f"ingested    {_when(doc.ingested_at)}")
    print(f"hash        {doc.content_hash or '-'}")
    for key, value in sorted(doc.metadata.items()):
        print(f"{key:<11} {value}")
    for c in chunks:
        where = " > ".join(c.heading_path) + (f" (page {c.page})" if c.page else "")
        print(f"\n#{c.ordinal} {c.id}  {where}")
        print(f"    {c.text[:300].replace(chr(10), ' ')}")
    return 0


def _delete(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.documents import delete_documents
    from chimera.tools.search.index import read_table

    table = read_table(config.index_dir)
    docs = [_find(table, source, args.tenant) for source in args.sources]  # every one known, or nothing goes
    removed = delete_documents(config.search, config.index_dir, docs)
    for d in docs:
        print(f"deleted  {d.source}  (tenant {d.tenant}, {d.chunk_count} chunks)")
    print(f"{len(docs)} documents, {removed} chunks removed")
    return 0


def _wipe(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.documents import wipe_documents
    from chimera.tools.search.index import read_table

    tenant = None if args.all else args.tenant
    docs = read_table(config.index_dir).documents(tenant)
    scope = "every tenant" if tenant is None else f"tenant {tenant}"
    if not args.yes:
        chunks = sum(d.chunk_count for d in docs)
        print(f"would remove {len(docs)} documents ({chunks} chunks) of {scope}; pass --yes to do it", file=sys.stderr)
        return 1
    removed = wipe_documents(config.search, config.index_dir, tenant) if docs else 0
    print(f"removed {len(docs)} documents ({removed} chunks) of {scope}")
    return 0


def _find(table: "ChunkTable", source: str, tenant: str | None) -> "DocumentInfo":
    """The document of `source` as given, else of the absolute path it names (an unknown one raises)."""
    from chimera.documents import DocumentNotFoundError, find_document

    try:
        return find_document(table, source, tenant)
    except DocumentNotFoundError:
        absolute = str(Path(source).resolve())
        if absolute == source:
            raise
        try:
            return find_document(table, absolute, tenant)
        except DocumentNotFoundError:
            raise DocumentNotFoundError(
                f"no indexed document {source}" + (f" in tenant {tenant}" if tenant else "") + " (`chimera docs list`)"
            ) from None


def _when(ingested_at: float) -> str:
    return datetime.fromtimestamp(ingested_at).strftime("%Y-%m-%d %H:%M:%S") if ingested_at else "-"


def _acl(doc: "DocumentInfo") -> str:
    return ",".join(doc.acl) or "-"
