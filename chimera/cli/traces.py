"""`chimera traces`: the span store's traces, newest first: a filtered list, or traces printed as span trees."""

import argparse
import re
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

from chimera.config import ChimeraConfig

if TYPE_CHECKING:
    from chimera.spans.store import TraceSummary

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `traces` on the top-level subparsers."""
    p = sub.add_parser("traces", help="list recent traces (filtered), or print them as trees")
    p.add_argument("--trace-id", help="print this trace as a tree")
    p.add_argument("--last", type=int, help="print the newest N matching traces as trees")
    p.add_argument("--model", help="the model the request asked for")
    p.add_argument("--expert", help="the expert the router chose")
    p.add_argument("--session", help="a session id")
    p.add_argument("--tenant", help="a tenant")
    p.add_argument("--task", help="a task id")
    p.add_argument("--status", choices=("ok", "error"), help="traces with a failed span (error), or the others")
    p.add_argument("--since", type=since_ns, help="started within (30m, 2h, 7d) or since (ISO 8601, unix ns)")
    p.add_argument("--limit", type=int, default=20, help="traces to list (default 20, at most 200)")
    p.set_defaults(func=_traces)


def since_ns(value: str) -> int:
    """Unix nanoseconds of `--since`: a duration back from now (`90s`, `30m`, `2h`, `7d`), an ISO 8601 time (local
    time when it names no zone), or unix nanoseconds."""
    if value.isdigit():
        return int(value)
    if ago := _AGO.fullmatch(value):
        return time.time_ns() - int(float(ago[1]) * _UNIT_S[ago[2]] * 1e9)
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1e9)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a duration (30m, 2h, 7d), ISO 8601 time or unix ns: {value}") from e


def _traces(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.spans.factory import open_span_store, span_store_path
    from chimera.spans.store import TraceNotFoundError, TraceQuery
    from chimera.traceview import render

    path = span_store_path(config.data_dir.resolve())
    if not path.exists():
        print(f"no span store at {path}", file=sys.stderr)
        return 1
    store = open_span_store(config.tracing, path)
    try:
        if args.trace_id:
            try:
                print("\n".join(render(args.trace_id, store.trace(args.trace_id))))
            except TraceNotFoundError:
                print(f"no trace {args.trace_id} in {path}", file=sys.stderr)
                return 1
            return 0
        query = TraceQuery(since_ns=args.since, model=args.model, expert=args.expert, session=args.session,
                           tenant=args.tenant, task=args.task, status=args.status,
                           limit=args.last or args.limit)  # fmt: skip
        page = store.traces(query)
        if not page.items:
            print(f"no matching traces in {path}", file=sys.stderr)
            return 1
        for summary in page.items if not args.last else reversed(page.items):
            if args.last:
                print("\n".join(render(summary.trace_id, store.trace(summary.trace_id))))
            else:
                print(_line(summary))
        return 0
    finally:
        store.close()


def _line(s: "TraceSummary") -> str:
    started = datetime.fromtimestamp(s.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    tokens = f"{s.input_tokens}+{s.output_tokens} tok" if s.input_tokens or s.output_tokens else "-"
    return (f"{started}  {s.trace_id}  {s.duration_ms:9.1f} ms  {s.span_count:3d} spans  "
            f"{'ERROR' if s.error else 'ok   '}  {s.model or '-'}  {s.expert or '-'}  {tokens}  {s.root_name}"
            + (f"  session={s.session}" if s.session else ""))  # fmt: skip
