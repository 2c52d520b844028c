"""Errors of the memory model, importable without torch (the Ray client names them, the actor raises them).

They derive from the long-context seam's `LongMemoryError`, so callers of `LongMemory` catch one root.
"""

from chimera.memory.long_context.base import LongMemoryError


class MemoryModelError(LongMemoryError):
    """The memory model could not be loaded or run."""


class UnsupportedModelError(MemoryModelError):
    """The checkpoint is not a model family whose state can be carried across chunks with constant size."""


class EmptyQueryError(MemoryModelError):
    """A recall query that tokenizes to nothing: there is no token to continue from."""
