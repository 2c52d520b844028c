"""`ServeEngineClient` over a complete fake Serve handle: a request whose replica dies before its first delta is
sent again; one that dies mid-stream ends with `EngineUnavailableError`, and no delta is ever sent twice."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import RayActorError

from chimera.cluster import serve_client
from chimera.cluster.serve_client import ServeEngineClient
from chimera.messages import ChatMessage
from chimera.models.engine.base import EngineUnavailableError, GenerationDelta, GenerationRequest

REQUEST = GenerationRequest(request_id="r1", messages=[ChatMessage(role="user", content="Hi")], max_tokens=8)


class FakeStream:
    """One streamed call: yields its script's deltas and raises its exceptions, in order; records `cancel`."""

    def __init__(self, script: list[GenerationDelta | Exception]) -> None:
        self.script, self.cancelled = script, False

    def __aiter__(self) -> AsyncIterator[GenerationDelta]:
        return self._run()

    async def _run(self) -> AsyncIterator[GenerationDelta]:
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield step

    def cancel(self) -> None:
        self.cancelled = True


class FakeHandle:
    """A Serve deployment handle whose `remote` calls each get the next script."""

    def __init__(self, *scripts: list[GenerationDelta | Exception]) -> None:
        self.scripts = list(scripts)
        self.calls: list[FakeStream] = []

    def options(self, **_: Any) -> "FakeHandle":
        return self

    def remote(self, request: GenerationRequest) -> FakeStream:
        self.calls.append(FakeStream(self.scripts.pop(0)))
        return self.calls[-1]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_client, "START_BACKOFF_S", 0.0)


async def _texts(client: ServeEngineClient, into: list[str]) -> list[str]:
    async for delta in client.generate(REQUEST):
        into.append(delta.text)
    return into


async def test_a_replica_lost_before_the_first_delta_is_retried_on_another() -> None:
    handle = FakeHandle(
        [RayActorError()], [GenerationDelta(text="Hel"), GenerationDelta(text="lo", finish_reason="stop")]
    )
    assert await _texts(ServeEngineClient(handle), []) == ["Hel", "lo"]
    assert len(handle.calls) == 2 and handle.calls[0].cancelled and not handle.calls[1].cancelled


async def test_a_replica_lost_mid_stream_ends_it_with_unavailable_and_is_not_sent_again() -> None:
    handle = FakeHandle([GenerationDelta(text="Hel"), RayActorError()], [GenerationDelta(text="never")])
    seen: list[str] = []
    with pytest.raises(EngineUnavailableError, match="not running"):
        await _texts(ServeEngineClient(handle), seen)
    assert seen == ["Hel"] and len(handle.calls) == 1 and handle.calls[0].cancelled


async def test_no_replica_taking_the_request_after_three_sends_is_unavailable() -> None:
    lost: list[GenerationDelta | Exception] = [RayActorError()]
    handle = FakeHandle(*(list(lost) for _ in range(serve_client.START_ATTEMPTS)))
    with pytest.raises(EngineUnavailableError):
        await _texts(ServeEngineClient(handle), [])
    assert len(handle.calls) == serve_client.START_ATTEMPTS and all(c.cancelled for c in handle.calls)
