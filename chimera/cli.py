"""`chimera` command line: serve, chat, models, route, router, ingest, search, eval, memory, traces."""

import argparse
import logging
import sys
from pathlib import Path

from chimera.config import ChimeraConfig, load_config
from chimera.errors import ChimeraError
from chimera.memory_cli import add_memory_commands

DEFAULT_CONFIG = "configs/local.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chimera", description="Chimera hybrid AI assistant")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the stack and the OpenAI-compatible server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_serve)

    p = sub.add_parser("chat", help="ask a running server one question")
    p.add_argument("message")
    p.add_argument("--model", default="chimera", help="chimera | auto | chimera-code|math|text|chat")
    p.add_argument("--session", help="x-session-id to continue a conversation")
    p.add_argument("--url", help="server URL (default: from the config)")
    p.set_defaults(func=_chat)

    p = sub.add_parser("models", help="model provisioning")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    prep = models_sub.add_parser("prepare", help="build local HF folders of the config's packaged models")
    prep.set_defaults(func=_prepare)

    p = sub.add_parser("route", help="show how the router decides on a text (no server needed)")
    p.add_argument("text", nargs="+", help="user turns of one conversation, oldest first")
    p.set_defaults(func=_route)

    p = sub.add_parser("router", help="router training")
    router_sub = p.add_subparsers(dest="router_command", required=True)
    train = router_sub.add_parser("train", help="train the gating head on labelled prompts")
    train.add_argument("--data", type=Path, required=True, help="JSONL of {text, label}, labels code|math|text|chat")
    train.add_argument("--out", type=Path, help="head file (default <data_dir>/router/gating-head.npz)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds for the reported scores")
    train.add_argument("--embedder", choices=["static", "contextual"], help="features (default: the config's)")
    train.set_defaults(func=_router_train)

    p = sub.add_parser("guard", help="guardrail classifiers")
    guard_sub = p.add_subparsers(dest="guard_command", required=True)
    train = guard_sub.add_parser("train", help="train the jailbreak and harmful-request classifiers")
    train.add_argument("--data", type=Path, required=True, help="JSONL of {text, label, source}")
    train.add_argument("--out", type=Path, help="heads file (default <data_dir>/guardrails/guard-heads.npz)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--cv", type=int, default=5, help="cross-validation folds for thresholds and reported scores")
    train.add_argument("--benign", type=Path, action="append", default=[],
                       help="JSONL (`text`) of more harmless prompts, e.g. the router's data (repeatable)")  # fmt: skip
    train.add_argument("--json", type=Path, help="also write the training report here")
    train.set_defaults(func=_guard_train)

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

    p = sub.add_parser("eval", help="evaluations")
    eval_sub = p.add_subparsers(dest="eval_command", required=True)
    ev = eval_sub.add_parser("router", help="score the configured router on labelled prompts")
    ev.add_argument("--data", type=Path, required=True, help="JSONL of {text, label}")
    ev.add_argument("--json", type=Path, help="also write the report here")
    ev.set_defaults(func=_eval_router)
    ev = eval_sub.add_parser("guard", help="score the configured input rails on labelled prompts")
    ev.add_argument("--data", type=Path, required=True, help="JSONL of {text, label, source}")
    ev.add_argument("--json", type=Path, help="also write the report here")
    ev.set_defaults(func=_eval_guard)
    ev = eval_sub.add_parser("retrieval", help="score every retriever on a BEIR-layout folder")
    ev.add_argument("--beir", type=Path, required=True, help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    ev.add_argument("--json", type=Path, help="also write the report here")
    ev.add_argument("--max-queries", type=int, help="score only the first N judged queries")
    ev.set_defaults(func=_eval_retrieval)

    add_memory_commands(sub)

    p = sub.add_parser("traces", help="print recent traces as trees")
    p.add_argument("--last", type=int, default=1, help="how many of the newest traces (default 1)")
    p.add_argument("--trace-id", help="one trace by id")
    p.set_defaults(func=_traces)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(load_config(args.config), args) or 0)
    except ChimeraError as e:
        print(f"chimera: {e}", file=sys.stderr)
        return 2


def _serve(config: ChimeraConfig, args: argparse.Namespace) -> int:
    import uvicorn

    from chimera.api.app import create_app
    from chimera.runtime import Runtime

    server = config.server.model_copy(
        update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    )
    runtime = Runtime(config)
    try:
        service = runtime.start()
        app = create_app(service, config.server, runtime.health, on_startup=runtime.astart, on_shutdown=runtime.aclose)
        print(f"Chimera serving on http://{server.host}:{server.port}", flush=True)
        uvicorn.run(app, host=server.host, port=server.port, log_level="warning", timeout_graceful_shutdown=10)
    finally:
        runtime.stop()
    return 0


def _chat(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.client import Client

    client = Client(args.url or f"http://{config.server.host}:{config.server.port}")
    reply = client.chat(args.message, model=args.model, session_id=args.session)
    print(reply.text)
    print(f"\n[expert {reply.expert} (confidence {reply.route_confidence:.2f}) · trace {reply.trace_id} · "
          f"session {reply.session_id} · {reply.usage['completion_tokens']} tokens]")  # fmt: skip
    return 0


def _prepare(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from chimera.models import provision

    names = provision.packaged_names_in_use([s.model for s in config.engines.values()])
    for name in tqdm(names, desc="models", unit="model"):
        folder = provision.prepare(name, config.data_dir)
        tqdm.write(f"{name}: {folder}")
    if not names:
        print("the config uses no packaged models; nothing to prepare")
    return 0


def _route(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.messages import ChatMessage
    from chimera.models.router.factory import build_router

    router = build_router(config.router)
    decision = router.route([ChatMessage(role="user", content=t) for t in args.text])
    print(decision.model_dump_json(indent=2))
    return 0


def _router_train(config: ChimeraConfig, args: argparse.Namespace) -> int:
    import json

    from chimera.models.router.factory import build_embedder
    from chimera.models.router.training import train_head

    out = args.out or Path(config.data_dir) / "router" / "gating-head.npz"
    embedder = build_embedder(args.embedder or config.router.embedder, config.router.embedder_max_tokens)
    head, report = train_head(args.data, embedder, seed=args.seed, folds=args.folds)
    head.save(out)
    print(json.dumps(report.as_dict(), indent=2))
    print(f"head written to {out} ({out.stat().st_size} bytes); use it with "
          f"`router: {{head: {out}, embedder: {embedder.kind}}}` in the config")  # fmt: skip
    return 0


def _eval_router(config: ChimeraConfig, args: argparse.Namespace) -> int:

    from chimera.models.router.evaluation import evaluate_router, format_report
    from chimera.models.router.factory import build_router
    from chimera.models.router.gating import load_labelled

    if not args.data.is_file():
        raise ChimeraError(f"no such data file: {args.data}")
    texts, labels = load_labelled(args.data, min_labels=1)
    report = evaluate_router(build_router(config.router), texts, labels)
    report["data"] = str(args.data)
    report["router"] = config.router.kind
    _print_report(format_report(report), report, args.json)
    return 0


def _guard_train(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.guardrails.metrics import format_rates
    from chimera.guardrails.training import train_guard

    out = args.out or Path(config.data_dir) / "guardrails" / "guard-heads.npz"
    for path in [args.data, *args.benign]:
        if not path.is_file():
            raise ChimeraError(f"no such data file: {path}")
    heads, report = train_guard(args.data, benign=args.benign, folds=args.cv, seed=args.seed)
    heads.save(out)
    summary = f"thresholds {report.thresholds}; {report.seconds:.0f} s"
    _print_report(f"{args.cv}-fold CV (thresholds chosen on the other folds)\n" + "\n".join(format_rates(report.cv))
                  + f"\n\n{summary}", report.as_dict(), args.json)  # fmt: skip
    print(f"heads written to {out} ({out.stat().st_size} bytes); use them with `guardrails: {{heads: {out}}}`")
    return 0


def _eval_guard(config: ChimeraConfig, args: argparse.Namespace) -> int:
    import asyncio
    import tempfile

    from chimera.guardrails.data import load_examples
    from chimera.guardrails.evaluation import evaluate_guard, format_report
    from chimera.guardrails.factory import build_rails

    if not args.data.is_file():
        raise ChimeraError(f"no such data file: {args.data}")
    examples = load_examples(args.data)
    with tempfile.TemporaryDirectory(prefix="chimera-eval-guard-") as scratch:
        # no verdict cache: every prompt pays the full input rails, as a new message does
        rails = build_rails(config.guardrails.model_copy(update={"enabled": True}), Path(scratch), cache_size=0)
        report = asyncio.run(evaluate_guard(rails, examples))
    report["data"] = str(args.data)
    _print_report(format_report(report), report, args.json)
    return 0


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


def _eval_retrieval(config: ChimeraConfig, args: argparse.Namespace) -> int:
    import tempfile

    from chimera.tools.search.evaluation import evaluate_beir, format_report, load_beir
    from chimera.tools.search.factory import build_ingestor, open_index

    dataset = load_beir(args.beir)
    with (
        tempfile.TemporaryDirectory(prefix="chimera-eval-") as scratch,
        open_index(config.search, Path(scratch)) as index,
    ):
        ingestor = build_ingestor(config.search, index, None)
        report = evaluate_beir(dataset, index, ingestor, max_queries=args.max_queries, progress=True)
    _print_report(format_report(report), report, args.json)
    return 0


def _print_report(text: str, report: dict, path: Path | None) -> None:
    """Print an evaluation's table, and write its JSON to `path` when given."""
    import json

    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwritten to {path}")


def _traces(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.cluster.tracing import trace_file
    from chimera.traceview import read_spans, render, traces

    path = trace_file(Path(config.data_dir))
    grouped = traces(read_spans(path))
    if args.trace_id:
        selected = {args.trace_id: grouped[args.trace_id]} if args.trace_id in grouped else {}
    else:
        selected = dict(list(grouped.items())[-args.last :])
    if not selected:
        print(f"no traces in {path}", file=sys.stderr)
        return 1
    for trace_id, spans in selected.items():
        print("\n".join(render(trace_id, spans)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
