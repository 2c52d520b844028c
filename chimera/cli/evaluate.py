"""`chimera eval router|guard|retrieval`: score the configured router, input rails and retrievers on labelled data."""

import argparse
from pathlib import Path

from chimera.cli._report import print_report
from chimera.config import ChimeraConfig
from chimera.evaluations import run_evaluation


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
    from chimera.models.router.evaluation import format_report

    report = run_evaluation(config, "router", args.data)
    print_report(format_report(report), report, args.json)
    return 0


def _eval_guard(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.guardrails.evaluation import format_report

    report = run_evaluation(config, "guard", args.data)
    print_report(format_report(report), report, args.json)
    return 0


def _eval_retrieval(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.tools.search.evaluation import format_report

    report = run_evaluation(config, "retrieval", args.beir, max_queries=args.max_queries, progress=True)
    print_report(format_report(report), report, args.json)
    return 0
