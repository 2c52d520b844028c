"""`chimera` command line: serve, chat, models, deploy, cluster, route, router, guard, ingest, search, docs, eval,
memory, keys, task, traces.

One module per command family. Each has `add_commands(sub)`, which registers its commands on the top-level
subparsers and sets `func(config, args) -> exit status` on each; `main` loads the config and calls it.
"""

import argparse
import logging
import sys

from chimera.cli import cluster, docs, evaluate, keys, memory, search, serve, tasks, traces, train
from chimera.config import load_config
from chimera.errors import ChimeraError

DEFAULT_CONFIG = "configs/local.yaml"


def main(argv: list[str] | None = None) -> int:
    """Run one `chimera` command.

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).

    Returns:
        The command's exit status; 2 when it raised a `ChimeraError` (printed to stderr, no traceback).
    """
    parser = argparse.ArgumentParser(prog="chimera", description="Chimera hybrid AI assistant")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)
    # registration order is the order `chimera --help` lists the commands in
    serve.add_commands(sub)
    cluster.add_commands(sub)
    train.add_commands(sub)
    search.add_commands(sub)
    docs.add_commands(sub)
    evaluate.add_commands(sub)
    memory.add_commands(sub)
    keys.add_commands(sub)
    tasks.add_commands(sub)
    traces.add_commands(sub)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(load_config(args.config), args) or 0)
    except ChimeraError as e:
        print(f"chimera: {e}", file=sys.stderr)
        return 2
