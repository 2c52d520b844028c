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
    print_report(f"{args.cv}-fold CV (thresholds chosen on the other folds)\n" + "\n".join(format_rates(report.cv))
                 + f"\n\n{summary}", report.as_dict(), args.json)  # fmt: skip
    print(f"heads written to {out} ({out.stat().st_size} bytes); use them with `guardrails: {{heads: {out}}}`")
    return 0
