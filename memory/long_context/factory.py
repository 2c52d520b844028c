"""The long-context memory a config asks for: the Mamba model when a checkpoint is configured, else extractive."""

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.extractive import ExtractiveMemory


def build_long_memory(config: MemoryConfig, redis_url: str, *, ttl_s: int | None = None) -> LongMemory:
    """Open the session memory; with a checkpoint, its actors start on the running Ray cluster.

    Args:
        config: The `memory` section of the config.
        redis_url: Where sessions' memory is kept.
        ttl_s: Idle sessions' memory expires after this many seconds (None: never).

    Raises:
        MemoryModelError, UnsupportedModelError: the configured checkpoint cannot be served.
    """
    if config.checkpoint is None:
        return ExtractiveMemory(redis_url, ttl_s=ttl_s)
    from chimera.memory.long_context.mamba import MambaMemory

    return MambaMemory.start(config, redis_url, replicas=config.replicas, ttl_s=ttl_s)


def describe(memory: LongMemory) -> str:
    """One line on the memory in use, for the CLI and /healthz."""
    if memory.mode == "mamba":
        return "mamba: answers from the session's recurrent state (memory.checkpoint)"
    return "extractive: BM25 over the session's stored text (no memory.checkpoint configured)"
