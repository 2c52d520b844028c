"""`chimera traces`: the newest traces in the JSONL trace file, printed as span trees."""

import argparse
import sys
from pathlib import Path

from chimera.config import ChimeraConfig


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `traces` on the top-level subparsers."""
    p = sub.add_parser("traces", help="print recent traces as trees")
    p.add_argument("--last", type=int, default=1, help="how many of the newest traces (default 1)")
    p.add_argument("--trace-id", help="one trace by id")
    p.set_defaults(func=_traces)


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
