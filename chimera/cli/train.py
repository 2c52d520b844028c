"""`chimera route`, `chimera router train` and `chimera guard train`: the router's decision, and training the heads.

All run offline, with no server: `route` shows how the configured router decides on a conversation, the two
`train` commands fit the router's gating head and the guardrail classifiers on labelled JSONL.
"""

import argparse
from pathlib import Path

from chimera.cli._report import print_report
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `route`, `router train` and `guard train` on the top-level subparsers."""
    p = sub.add_parser("route", help="show how the router decides on a text (no server needed)")
    p.add_argument("text", nargs="+", help="user turns of one conversation, oldest first")
    p.set_defaults(func=_route)

    p = sub.add_parser("router", help="router training")
    router_sub = p.add_subparsers(dest="router_command", required=True)
    train = router_sub.add_parser("train", help="train the gating head on labelled prompts")
    train.add_argument("--data", type=Path, action="append", required=True,
                       help="JSONL of {text, label[, source]}, labels code|math|text|chat (repeatable)")  # fmt: skip
    train.add_argument("--out", type=Path, help="head file (default <data_dir>/router/gating-head.npz)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--folds", type=int, default=5, help="random cross-validation folds")
    train.add_argument("--cv", choices=["random", "source"], default="random",
                       help="`source`: also hold out each source in turn; calibrate and select on that")  # fmt: skip
    train.add_argument("--embedder", choices=["static", "contextual", "cascade"], help="default: the config's")
    train.add_argument("--json", type=Path, help="also write the training report here")
    train.set_defaults(func=_router_train)

    p = sub.add_parser("guard", help="guardrail classifiers")
    guard_sub = p.add_subparsers(dest="guard_command", required=True)
    train = guard_sub.add_parser("train", help="train the jailbreak and harmful-request classifiers")
    train.add_argument("--data", type=Path, action="append", required=True,
                       help="JSONL of {text, label, source} (repeatable)")  # fmt: skip
    train.add_argument("--out", type=Path, help="heads file (default <data_dir>/guardrails/guard-heads.npz)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--cv", type=_guard_folds, default="source",
                       help="`source` (hold out each data set in turn; default) or a number of random folds, for "
                       "the thresholds and the reported scores")  # fmt: skip
    train.add_argument("--benign", type=Path, action="append", default=[],
                       help="JSONL (`text`) of more harmless prompts, e.g. the router's data (repeatable)")  # fmt: skip
    train.add_argument("--json", type=Path, help="also write the training report here")
    train.set_defaults(func=_guard_train)


def _route(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.messages import ChatMessage
    from chimera.models.router.factory import build_router

    router = build_router(config.router)
    decision = router.route([ChatMessage(role="user", content=t) for t in args.text])
    print(decision.model_dump_json(indent=2))
    return 0


def _router_train(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.models.router.evaluation import format_scores
    from chimera.models.router.factory import build_embedder
    from chimera.models.router.training import CONTEXTUAL_MAX_TOKENS, train_cascade, train_head

    for path in args.data:
        if not path.is_file():
            raise ChimeraError(f"no such data file: {path}")
    out = args.out or Path(config.data_dir) / "router" / "gating-head.npz"
    kind, max_tokens = args.embedder or config.router.embedder, config.router.embedder_max_tokens
    options = {"cv": args.cv, "seed": args.seed, "folds": args.folds}
    if kind == "cascade":
        contextual = build_embedder("contextual", min(max_tokens, CONTEXTUAL_MAX_TOKENS))
        head, report = train_cascade(args.data, build_embedder("static", max_tokens), contextual, **options)
    else:
        head, report = train_head(args.data, build_embedder(kind, max_tokens), **options)
    head.save(out)
    text = "\n\n".join(f"{name} ({report.sources} sources, n={report.n})\n{format_scores(scores)}"
                        for name, scores in report.cv.items())  # fmt: skip
    print_report(f"{text}\n\nparts: {report.parts_macro_f1}\ncascade: {report.cascade}", report.as_dict(), args.json)
    print(f"head written to {out} ({out.stat().st_size} bytes); use it with "
          f"`router: {{head: {out}, embedder: {kind}}}` in the config")  # fmt: skip
    return 0


def _guard_folds(value: str) -> int | str:
    if value == "source":
        return value
    try:
        folds = int(value)
    except ValueError:
        folds = 0
    if folds < 2:
        raise argparse.ArgumentTypeError(f"expected `source` or a number of folds >= 2, got {value!r}")
    return folds


def _guard_train(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.guardrails.metrics import format_rates
    from chimera.guardrails.training import train_guard

    out = args.out or Path(config.data_dir) / "guardrails" / "guard-heads.npz"
    for path in [*args.data, *args.benign]:
        if not path.is_file():
            raise ChimeraError(f"no such data file: {path}")
    heads, report = train_guard(args.data, benign=args.benign, folds=args.cv, seed=args.seed)
    heads.save(out)
    summary = f"thresholds {report.thresholds}; {report.seconds:.0f} s"
    folds = "leave-one-source-out CV (rates per held-out data set)" if args.cv == "source" else f"{args.cv}-fold CV"
    print_report(f"{folds}, thresholds chosen on the other folds\n" + "\n".join(format_rates(report.cv))
                 + f"\n\n{summary}", report.as_dict(), args.json)  # fmt: skip
    print(f"heads written to {out} ({out.stat().st_size} bytes); use them with `guardrails: {{heads: {out}}}`")
    return 0
