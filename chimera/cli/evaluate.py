"""`chimera eval router|guard|pii|retrieval|answers`: score the configured router, input rails, PII masking,
retrievers and the served agents' answers on labelled data."""

import argparse
from pathlib import Path

from chimera.answer_evaluation import DEFAULT_GRAPHS
from chimera.cli._report import print_report
from chimera.config import ChimeraConfig
from chimera.evaluations import run_evaluation


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `eval router`, `eval guard`, `eval pii`, `eval retrieval` and `eval answers` on the top-level
    subparsers."""
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
    ev = eval_sub.add_parser("pii", help="score the configured PII masking on labelled texts (prose and code)")
    ev.add_argument("--data", type=Path, required=True, help="JSONL of {id, text, code, pii: [{kind, text}]}")
    ev.add_argument("--out", "--json", dest="json", type=Path, help="also write the report here")
    ev.set_defaults(func=_eval_pii)
    ev = eval_sub.add_parser("retrieval", help="score every retriever on a BEIR-layout folder")
    ev.add_argument("--beir", type=Path, required=True, help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    ev.add_argument("--json", type=Path, help="also write the report here")
    ev.add_argument("--max-queries", type=int, help="score only the first N judged queries")
    ev.set_defaults(func=_eval_retrieval)
    ev = eval_sub.add_parser("answers", help="score the agents' citations and abstentions end to end")
    ev.add_argument("--data", type=Path, required=True, help="JSONL of {question, answer_present, supporting_source?}")
    ev.add_argument("--docs", type=Path, required=True, help="the documents folder the questions are about")
    ev.add_argument("--out", "--json", dest="out", type=Path, help="also write the report here")
    ev.add_argument("--graphs", default=",".join(DEFAULT_GRAPHS), help="comma-separated `model` values")
    ev.add_argument("--max-tokens", type=int, default=200, help="the requests' max_tokens (the answer's cap)")
    ev.set_defaults(func=_eval_answers)


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


def _eval_pii(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.guardrails.pii_evaluation import format_report

    report = run_evaluation(config, "pii", args.data)
    print_report(format_report(report), report, args.json)
    return 0


def _eval_retrieval(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.tools.search.evaluation import format_report

    report = run_evaluation(config, "retrieval", args.beir, max_queries=args.max_queries, progress=True)
    print_report(format_report(report), report, args.json)
    return 0


def _eval_answers(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.answer_evaluation import evaluate_answers, format_report

    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    report = evaluate_answers(Path(args.config), args.data, args.docs, graphs=graphs, max_tokens=args.max_tokens)
    print_report(format_report(report), report, args.out)
    return 0
