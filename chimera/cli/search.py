"""`chimera ingest` and `chimera search`: index documents for hybrid search, and query the index."""

import argparse
from pathlib import Path

from chimera.config import ChimeraConfig


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `ingest` and `search` on the top-level subparsers."""
    p = sub.add_parser("ingest", help="index files and folders for search (incremental)")
    p.add_argument("paths", nargs="+", type=Path, help="files (PDF, DOCX, HTML, Markdown, text) and folders")
    p.add_argument("--tenant", default="default", help="tenant the documents belong to")
    p.add_argument("--acl", action="append", default=[], help="group allowed to see them (repeatable)")
    p.add_argument("--delete", action="store_true", help="remove these files (or folders) from the index instead")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("search", help="hybrid search over the ingested documents")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="results (default 5)")
    p.add_argument("--tenant", default="default")
    p.add_argument("--acl", action="append", help="the caller's groups (repeatable)")
    p.add_argument("--retriever", choices=["fused", "bm25", "dense", "graph"], default="fused")
    p.set_defaults(func=_search)


def _ingest(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.tools.search.factory import build_ingestor, open_index

    with open_index(config.search, config.index_dir) as index:
        ingestor = build_ingestor(config.search, index, config.index_dir)
        if args.delete:
            report = ingestor.delete(args.paths, tenant=args.tenant)
        else:
            report = ingestor.ingest(args.paths, tenant=args.tenant, acl=args.acl)
    for outcome in report.outcomes:
        if outcome.status != "unchanged":
            detail = outcome.reason or f"{outcome.chunks} chunks"
            print(f"{outcome.status:>9}  {outcome.source}  ({detail})")
    print(report.summary())
    return 1 if report.count("skipped") else 0


def _search(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.tools.search.factory import load_index
    from chimera.tools.search.types import SearchFilters

    index = load_index(config.search, config.index_dir, None)
    filters = SearchFilters(tenant=args.tenant, acl=frozenset(args.acl) if args.acl else None)
    if args.retriever == "fused":
        results = index.search(args.query, args.k, filters)
    else:
        results = index.retrievers[args.retriever].retrieve(args.query, args.k, filters)
    for n, r in enumerate(results, start=1):
        where = r.source + (f", page {r.chunk.page}" if r.chunk.page else "")
        heading = " > ".join(r.chunk.heading_path)
        print(f"[{n}] {r.score:.4f}  {where}" + (f"  ({heading})" if heading else ""))
        print(f"    {r.text[:200].replace(chr(10), ' ')}")
    if not results:
        print("no results")
    return 0
