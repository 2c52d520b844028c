"""`recall`: ask the session's long-context memory (what the session read: documents, earlier turns).

Besides the tool call, `Recall` grounds the agent's question in the memory (`Grounding`): what it recalls comes
back as one passage whose source is the session memory, so the answer cites it like a document.
"""

import hashlib
from typing import ClassVar

from pydantic import BaseModel, Field

from chimera.memory.long_context.base import LongMemory, LongMemoryError
from chimera.tools.base import SourcedResult, Tool, ToolError
from chimera.tools.search.analysis import analyze
from chimera.tools.search.types import Chunk, RetrievedChunk

MEMORY_SOURCE = "session memory"  # the source of a recalled passage, as citations name it
NOTHING_RECALLED = "nothing in this conversation's memory matches"
# A recollection grounds a question only when it holds at least this share of the question's terms: the
# extractive memory returns any passage sharing one term, and a Mamba memory always generates something.
_MIN_QUESTION_TERMS = 0.5


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
        return await self._recall(args.query) or NOTHING_RECALLED

    async def ground(self, question: str) -> SourcedResult | None:
        """What the memory holds on `question`, as a passage to cite; None when it holds nothing on it.

        Raises:
            ToolError: the memory could not be read.
        """
        text = await self._recall(question[:500])
        share = question_terms_in(question, text)
        if share < _MIN_QUESTION_TERMS:
            return None
        return SourcedResult((self._passage(text, share),))

    async def _recall(self, query: str) -> str:
        try:
            found = await self.memory.recall(self.session, query, self.max_tokens)
        except LongMemoryError as e:
            raise ToolError(f"memory unavailable: {e}") from e
        return found.text

    def _passage(self, text: str, score: float) -> RetrievedChunk:
        digest = hashlib.blake2b(f"{self.session}\0{text}".encode(), digest_size=8).hexdigest()
        chunk = Chunk(id=f"memory-{digest}", doc_id=f"memory:{self.session}", text=text, source=MEMORY_SOURCE,
                      ordinal=0, content_hash=digest)  # fmt: skip
        return RetrievedChunk(chunk, score, retriever=self.name)


def question_terms_in(question: str, text: str) -> float:
    """The share of the question's terms (stop words out, stemmed) that `text` contains; 0 for a question
    without any."""
    asked = set(analyze(question))
    return len(asked & set(analyze(text))) / len(asked) if asked else 0.0
