"""`recall`: ask the session's long-context memory (what the session read: documents, earlier turns)."""

from typing import ClassVar

from pydantic import BaseModel, Field

from chimera.memory.long_context.base import LongMemory, LongMemoryError
from chimera.tools.base import Tool, ToolError


class RecallArgs(BaseModel):
    query: str = Field(description="What to recall from this conversation's memory.", min_length=1, max_length=500)


class Recall(Tool):
    """The memory of one session: a tool instance is made per run, bound to the run's session.

    Args:
        memory: The long-context memory (Mamba state or extractive).
        session: The session whose memory is asked.
        max_tokens: Length of a recalled answer.
    """

    name: ClassVar[str] = "recall"
    description: ClassVar[str] = (
        "Recall what was said or read earlier in this conversation (long documents, earlier turns)."
    )
    Args: ClassVar[type[BaseModel]] = RecallArgs

    def __init__(self, memory: LongMemory, session: str, *, max_tokens: int = 128) -> None:
        self.memory = memory
        self.session = session
        self.max_tokens = max_tokens

    async def run(self, args: RecallArgs) -> str:
        try:
            found = await self.memory.recall(self.session, args.query, self.max_tokens)
        except LongMemoryError as e:
            raise ToolError(f"memory unavailable: {e}") from e
        return found.text or "nothing in this conversation's memory matches"
