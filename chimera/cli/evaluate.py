"""`chimera eval router|guard|retrieval`: score the configured router, input rails and retrievers on labelled data."""

import argparse
from pathlib import Path

from chimera.cli._report import print_report
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `eval router`, `eval guard` and `eval retrieval` on the top-level subparsers."""
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


def _eval_router(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.models.router.evaluation import evaluate_router, format_report
    from chimera.models.router.factory import build_router
    from chimera.models.router.gating import load_labelled

    if not args.data.is_file():
        raise ChimeraError(f"no such data file: {args.data}")
    prompts = load_labelled([args.data], min_labels=1)
    report = evaluate_router(build_router(config.router), prompts.texts, prompts.labels)
    report["data"] = str(args.data)
    report["router"] = config.router.kind
    print_report(format_report(report), report, args.json)
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
    print_report(format_report(report), report, args.json)
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
    print_report(format_report(report), report, args.json)
    return 0
