"""LangGraph checkpoints for Chimera: `RedisCheckpointSaver` on plain Redis, keyed by session id."""

from chimera.memory.checkpoint.base import CheckpointError, CorruptCheckpointError, session_config
from chimera.memory.checkpoint.redis_saver import RedisCheckpointSaver

__all__ = ["CheckpointError", "CorruptCheckpointError", "RedisCheckpointSaver", "session_config"]
