"""`chimera task submit|status|watch|cancel|list`: durable tasks on a running server, through the Python SDK.

`watch` prints a task's events as they come (an ingest task's `progress` events as a progress bar), then its
result; its exit status is 0 when the task succeeded and 1 when it failed or was cancelled.
"""

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError

if TYPE_CHECKING:
    from tqdm import tqdm

    from chimera.client import Client
    from chimera.task_client import Task, TaskEvent

KINDS = ("agent", "ingest", "eval")
STATUSES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `chimera task …` on the top-level subparsers."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help="server URL (default: from the config)")
    server.add_argument("--api-key", default=os.environ.get("CHIMERA_API_KEY"),
                        help="API key (default: $CHIMERA_API_KEY)")  # fmt: skip
    p = sub.add_parser("task", help="durable tasks on a running server (submit, status, watch, cancel, list)")
    task_sub = p.add_subparsers(dest="task_command", required=True)

    submit = task_sub.add_parser("submit", parents=[server], help="queue a task; prints its id")
    submit.add_argument("kind", choices=KINDS)
    submit.add_argument("--prompt", help='an agent task\'s question (input {"prompt": …})')
    submit.add_argument("--input", help="the task's input as a JSON object (--prompt and --path add to it)")
    submit.add_argument("--path", action="append", default=[], help="a file or folder to ingest (repeatable)")
    submit.add_argument("--model", help="an agent task's model (default chimera)")
    submit.add_argument("--idempotency-key", help="submitting again with the same key and input returns the task")
    submit.add_argument("--priority", choices=["high", "normal", "low"])
    submit.add_argument("--wait", action="store_true", help="then watch it to the end (exit status as `watch`)")
    submit.set_defaults(func=_submit)

    for name, func, text in (("status", _status, "the task as JSON"),
                             ("watch", _watch, "print the task's events and result as they come"),
                             ("cancel", _cancel, "cancel the task")):  # fmt: skip
        command = task_sub.add_parser(name, parents=[server], help=text)
        command.add_argument("id")
        command.set_defaults(func=func)

    listing = task_sub.add_parser("list", parents=[server], help="this key's tasks, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--kind", choices=KINDS)
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=_list)


def _client(config: ChimeraConfig, args: argparse.Namespace) -> "Client":
    from chimera.client import Client

    return Client(args.url or f"http://{config.server.host}:{config.server.port}", api_key=args.api_key)


def _submit(config: ChimeraConfig, args: argparse.Namespace) -> int:
    task_input = _input(args)
    with _client(config, args) as client:
        task = client.tasks.submit(args.kind, task_input, model=args.model, idempotency_key=args.idempotency_key,
                                   priority=args.priority)  # fmt: skip
        print(task.id, flush=True)
        return _follow(task) if args.wait else 0


def _input(args: argparse.Namespace) -> dict[str, Any]:
    try:
        given = json.loads(args.input) if args.input else {}
    except ValueError as e:
        raise ChimeraError(f"--input is not JSON: {e}") from e
    if not isinstance(given, dict):
        raise ChimeraError("--input must be a JSON object")
    if args.prompt is not None:
        given["prompt"] = args.prompt
    if args.path:
        given["paths"] = [os.path.abspath(p) for p in args.path]  # the server resolves them, not this directory
    if not given:
        raise ChimeraError(f"the {args.kind} task needs --prompt, --path or --input")
    return given


def _status(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with _client(config, args) as client:
        print(json.dumps(asdict(client.tasks.get(args.id).info), indent=2))
    return 0


def _cancel(config: ChimeraConfig, args: argparse.Namespace) -> int:
    with _client(config, args) as client:
        info = client.tasks.get(args.id).cancel()
    print(f"{info.id} {info.status}" + (" (cancel requested)" if not info.terminal else ""))
    return 0


def _watch(config: ChimeraConfig, args: argparse.Namespace) -> int:
    with _client(config, args) as client:
        return _follow(client.tasks.get(args.id))


def _list(config: ChimeraConfig, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ChimeraError("--limit must be at least 1")
    with _client(config, args) as client:
        for info in client.tasks.list(status=args.status, kind=args.kind, limit=args.limit):
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
            print(f"{info.id}  {info.kind:<6}  {info.status:<9}  {created}  attempt {info.attempt}")
    return 0


def _follow(task: "Task") -> int:
    """Print the task's events to the end; 0 if it succeeded, else 1."""
    bar: tqdm | None = None
    streaming = False  # in the middle of an agent's streamed text
    try:
        for event in task.events():
            if event.type == "progress" and task.info.kind == "ingest":
                bar = _progress(bar, event.data)
                continue
            if event.type == "delta":
                print(event.data.get("text", ""), end="", flush=True)
                streaming = True
                continue
            if streaming:
                print()
                streaming = False
            if event.type == "paused":
                _say(bar, f'[paused] {_brief(event)} (approve: POST /v1/tasks/{task.id}/resume {{"approve": true}})')
            elif not event.terminal:
                _say(bar, f"[{event.type}] {_brief(event)}")
    finally:
        if bar is not None:
            bar.close()
    info = task.status()
    if info.status == "succeeded":
        print(json.dumps(info.result, indent=2))
        return 0
    error = info.error or {}
    print(f"task {info.id} {info.status}: {error.get('code')}: {error.get('message')}", file=sys.stderr)
    return 1


def _progress(bar: "tqdm | None", data: dict[str, Any]) -> "tqdm":
    from tqdm import tqdm

    if bar is None:
        bar = tqdm(total=data.get("files_total"), unit="file", desc="ingest")
    bar.total = data.get("files_total", bar.total)
    bar.n = data.get("files_done", bar.n)
    note = os.path.basename(str(data["source"])) if data.get("source") else data.get("message")
    if note:
        bar.set_postfix_str(str(note), refresh=False)
    bar.refresh()
    return bar


def _say(bar: "tqdm | None", line: str) -> None:
    if bar is None:
        print(line, flush=True)
    else:
        bar.write(line)


def _brief(event: "TaskEvent") -> str:
    text = json.dumps(event.data, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."
