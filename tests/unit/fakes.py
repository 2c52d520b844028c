"""Complete fakes for graph-logic tests: a scripted `LLMEngine` (replies come from a script, in order) and a
document search over fixed passages.

The engine keeps the engine contract (tests/contracts/llm_engine.py) with words as tokens: `max_tokens` and `stop` cut
the reply, a prompt of `context_window` words or more is refused, `abort` and closing the stream end a request,
`health` counts the requests in flight. It needs no loading, so it serves from construction until `shutdown`.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import BaseModel

from chimera.models.engine.base import (
    EngineHealth,
    EngineUnavailableError,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
    PromptTooLongError,
)
from chimera.tools.base import SourcedResult, Tool
from chimera.tools.search.types import Chunk, RetrievedChunk


class ScriptedEngine(LLMEngine):
    """Answers each request with the next scripted reply, streamed word by word; records every request."""

    def __init__(self, replies: list[str], *, context_window: int = 8192, word_delay_s: float = 0.0) -> None:
        self.replies = list(replies)
        self.word_delay_s = word_delay_s  # a slow engine: runs that last long enough to be cancelled or killed
        self.requests: list[GenerationRequest] = []
        self.context_window = context_window
        self.running = True
        self._active: set[str] = set()
        self._aborted: set[str] = set()

    async def start(self) -> None:
        self.running = True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if not self.running:
            raise EngineUnavailableError("the scripted engine is shut down")
        self.requests.append(request)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        if prompt_tokens >= self.context_window:
            raise PromptTooLongError(f"prompt has {prompt_tokens} words; the script accepts {self.context_window - 1}")
        if not self.replies:
            raise AssertionError(f"script exhausted at request {len(self.requests)}")
        reply, finish = _cut(self.replies.pop(0), request)
        words = reply.split(" ") if reply else []
        self._active.add(request.request_id)
        try:
            for i, word in enumerate(words):
                if self.word_delay_s:
                    await asyncio.sleep(self.word_delay_s)
                if request.request_id in self._aborted:
                    yield GenerationDelta(finish_reason="abort", prompt_tokens=prompt_tokens, completion_tokens=i)
                    return
                last = i == len(words) - 1
                yield GenerationDelta(
                    text=word if i == 0 else " " + word,
                    finish_reason=finish if last else None,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=i + 1,
                )
            if not words:
                yield GenerationDelta(finish_reason=finish, prompt_tokens=prompt_tokens)
        finally:
            self._active.discard(request.request_id)
            self._aborted.discard(request.request_id)

    async def abort(self, request_id: str) -> None:
        if request_id in self._active:
            self._aborted.add(request_id)

    async def health(self) -> EngineHealth:
        return EngineHealth(model="scripted", healthy=self.running, running=len(self._active))

    async def shutdown(self) -> None:
        self.running = False


def _cut(reply: str, request: GenerationRequest) -> tuple[str, FinishReason]:
    """The reply up to the first stop string, then to `max_tokens` words, and why it ends."""
    finish: FinishReason = "stop"
    for stop in request.stop:
        if stop in reply:
            reply = reply[: reply.index(stop)]
    words = reply.split(" ")
    if len(words) > request.max_tokens:
        reply, finish = " ".join(words[: request.max_tokens]), "length"
    return reply, finish


class QueryArgs(BaseModel):
    query: str


class PassageSearch(Tool):
    """A document search over fixed passages (source, text): finds all of them for every question (none with
    `finds=False`), when grounding and when the agent searches itself; counts the agent's searches."""

    name: ClassVar[str] = "hybrid_search"
    description: ClassVar[str] = "Search the documents."
    Args: ClassVar[type[BaseModel]] = QueryArgs

    def __init__(self, passages: list[tuple[str, str]], *, finds: bool = True) -> None:
        chunks = [
            Chunk(id=f"c{i}", doc_id=f"d{i}", text=text, source=source, ordinal=i, content_hash=f"h{i}")
            for i, (source, text) in enumerate(passages)
        ]
        self.found = SourcedResult(tuple(RetrievedChunk(c, 1.0, "test") for c in chunks) if finds else ())
        self.runs = 0

    async def ground(self, question: str) -> SourcedResult | None:
        return self.found if self.found.passages else None

    async def run(self, args: QueryArgs) -> SourcedResult:
        self.runs += 1
        return self.found
