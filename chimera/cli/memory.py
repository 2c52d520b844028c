"""`chimera memory read|ask|info|forget`: a session's long-context memory from the command line.

Works with or without a running server: the embedded Redis is reused when `chimera serve` runs, else started for
the command. With `memory.checkpoint` set, the memory model actor starts on the config's Ray (local if unset),
joined through `ray_connection` like every other Chimera process.
"""

import argparse
import asyncio
import codecs
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path

from chimera.cli._redis import redis_url
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.factory import build_long_memory, describe

_BLOCK_BYTES = 1 << 20  # a document is read into memory a MiB at a time


class MemoryInputError(ChimeraError):
    """The file to read cannot be read as text."""


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `chimera memory …` on the top-level subparsers."""
    p = sub.add_parser("memory", help="long-context session memory (read documents, ask, forget)")
    memory_sub = p.add_subparsers(dest="memory_command", required=True)
    read = memory_sub.add_parser("read", help="read a text file into a session's memory (streamed)")
    read.add_argument("file", type=Path)
    read.add_argument("--session", required=True)
    read.set_defaults(func=_run, action="read")
    ask = memory_sub.add_parser("ask", help="answer from a session's memory")
    ask.add_argument("query")
    ask.add_argument("--session", required=True)
    ask.add_argument("--max-tokens", type=int, help="length of the answer (default: the config's)")
    ask.set_defaults(func=_run, action="ask")
    for name, text in (("info", "tokens read and state size"), ("forget", "drop a session's memory")):
        q = memory_sub.add_parser(name, help=text)
        q.add_argument("--session", required=True)
        q.set_defaults(func=_run, action=name)


def _run(config: ChimeraConfig, args: argparse.Namespace) -> int:
    with redis_url(config) as url:
        return asyncio.run(_act(config, url, args))


async def _act(config: ChimeraConfig, redis_url: str, args: argparse.Namespace) -> int:
    async with _memory(config, redis_url) as memory:
        print(f"memory: {describe(memory)}")
        if args.action == "read":
            info = None
            for block in _text_blocks(args.file):
                info = await memory.read(args.session, block)
            info = info or await memory.state_info(args.session)
            print(json.dumps(info.model_dump()))
        elif args.action == "ask":
            found = await memory.recall(args.session, args.query, args.max_tokens or config.memory.recall_max_tokens)
            print(found.text or "(nothing in this session's memory matches)")
        elif args.action == "info":
            print(json.dumps((await memory.state_info(args.session)).model_dump()))
        else:
            await memory.forget(args.session)
            print(f"forgot session {args.session}")
    return 0


def _text_blocks(path: Path) -> Iterator[str]:
    """The file's text, decoded as UTF-8 block by block (a character split across blocks is kept whole)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            while block := f.read(_BLOCK_BYTES):
                yield decoder.decode(block)
            yield decoder.decode(b"", final=True)
    except OSError as e:
        raise MemoryInputError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise MemoryInputError(f"{path} is not UTF-8 text (byte {e.start} of a block): convert it first") from e


@asynccontextmanager
async def _memory(config: ChimeraConfig, redis_url: str) -> AsyncIterator[LongMemory]:
    """The configured memory for the command; Mamba memory's actors need Ray, joined for the command's length."""
    connection: AbstractContextManager[None] = nullcontext()
    if config.memory.checkpoint is not None:
        from chimera.cluster.ray_runtime import ray_connection

        connection = ray_connection(config)
    with connection:
        memory = build_long_memory(config.memory, redis_url, ttl_s=config.redis.session_ttl_s)
        try:
            yield memory
        finally:
            await memory.close()
