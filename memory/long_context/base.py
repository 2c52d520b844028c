"""The long-context memory seam: what a session has read, and answers drawn from it.

Two implementations sit beside it: `MambaMemory` (a Mamba-2 family model whose fixed-size recurrent state is kept
per session in Redis) and `ExtractiveMemory` (BM25 over the session's stored text, used when no memory checkpoint
is configured). The `recall` tool and the `chimera memory` CLI see only this interface.
"""

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chimera.errors import ChimeraError

MemoryMode = Literal["mamba", "extractive"]


class LongMemoryError(ChimeraError):
    """Long-context memory could not read, recall or forget."""


class StateMismatchError(LongMemoryError):
    """A session's stored state came from another model or revision; it is never mixed with this one."""


class CorruptStateError(LongMemoryError):
    """A session's stored state could not be decoded."""


class MemoryInfo(BaseModel):
    """What a session's memory holds."""

    model_config = ConfigDict(frozen=True)

    session: str
    mode: MemoryMode
    tokens_read: int = 0
    state_bytes: int = 0  # mamba: the recurrent state's size; extractive: the stored text's size
    revision: str = ""  # mamba: the model revision the state belongs to


class Recollection(BaseModel):
    """An answer from a session's memory."""

    model_config = ConfigDict(frozen=True)

    session: str
    mode: MemoryMode
    text: str  # mamba: generated from a copy of the state; extractive: the best-matching passages
    tokens_read: int = 0


class LongMemory(ABC):
    """Reads text into a session's memory and answers queries from it."""

    mode: MemoryMode

    @abstractmethod
    async def read(self, session: str, text: str) -> MemoryInfo:
        """Add `text` to the session's memory (reads to one session are serialized)."""

    @abstractmethod
    async def recall(self, session: str, query: str, max_tokens: int | None = None) -> Recollection:
        """Answer `query` from the session's memory without changing what is stored (at most `max_tokens`
        tokens; None: the memory's default)."""

    @abstractmethod
    async def state_info(self, session: str) -> MemoryInfo:
        """Tokens read and stored bytes of the session (zeros for an unknown session)."""

    @abstractmethod
    async def forget(self, session: str) -> None:
        """Drop everything stored for the session."""

    async def health(self) -> list[BaseModel]:
        """One report per process serving this memory (none for a memory served in this process).

        Raises:
            LongMemoryError: a serving process is down.
        """
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook, most memories hold nothing to release
        """Release connections."""
