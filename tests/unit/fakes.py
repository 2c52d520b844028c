"""A complete scripted `LLMEngine` for graph-logic tests: replies come from a script, in order."""

from collections.abc import AsyncIterator

from chimera.models.engine.base import EngineHealth, GenerationDelta, GenerationRequest, LLMEngine


class ScriptedEngine(LLMEngine):
    """Answers each request with the next scripted reply, streamed word by word; records every request."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[GenerationRequest] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError(f"script exhausted at request {len(self.requests)}")
        reply = self.replies.pop(0)
        words = reply.split(" ")
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield GenerationDelta(
                text=word if i == 0 else " " + word,
                finish_reason="stop" if last else None,
                prompt_tokens=prompt_tokens,
                completion_tokens=i + 1,
            )

    async def abort(self, request_id: str) -> None:
        return None

    async def health(self) -> EngineHealth:
        return EngineHealth(model="scripted", healthy=self.started, running=0)

    async def shutdown(self) -> None:
        self.started = False
