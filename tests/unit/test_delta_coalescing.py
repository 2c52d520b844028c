"""`coalesce_deltas`, the replica's merging of engine deltas that are ready together: a scripted async source, no
Ray, no engine."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from chimera.cluster.expert_server import coalesce_deltas
from chimera.models.engine.base import EngineUnavailableError, GenerationDelta


class ScriptedDeltas:
    """An engine stream whose deltas come out in bursts: each burst waits for its gate, then is ready at once.

    Records how it ended: `finished` (all sent), `closed` (closed or cancelled before the end, as an engine abort).
    """

    def __init__(self, bursts: list[list[str]], *, error: Exception | None = None) -> None:
        self.bursts = bursts
        self.error = error
        self.gates = [asyncio.Event() for _ in bursts]
        self.finished = self.closed = False
        self._stream = self._run()

    def __aiter__(self) -> "ScriptedDeltas":
        return self

    async def __anext__(self) -> GenerationDelta:
        return await self._stream.__anext__()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _run(self) -> AsyncGenerator[GenerationDelta, None]:
        sent = 0
        try:
            for gate, burst in zip(self.gates, self.bursts, strict=True):
                await gate.wait()
                for i, text in enumerate(burst):
                    sent += 1
                    last = gate is self.gates[-1] and i == len(burst) - 1 and self.error is None
                    yield GenerationDelta(
                        text=text, finish_reason="stop" if last else None, prompt_tokens=7, completion_tokens=sent
                    )
            if self.error is not None:
                raise self.error
            self.finished = True
        finally:
            self.closed = not self.finished


async def _take(stream: AsyncIterator[GenerationDelta]) -> GenerationDelta:
    return await asyncio.wait_for(anext(stream), timeout=5)


async def test_deltas_ready_together_go_out_as_one_in_order() -> None:
    source = ScriptedDeltas([["Hel"], ["lo", ",", " wor", "ld"], ["!"]])
    stream = coalesce_deltas(source)
    source.gates[0].set()
    assert (await _take(stream)).text == "Hel"  # the first delta does not wait for company
    source.gates[1].set()
    await asyncio.sleep(0.01)  # the consumer lags: the whole burst is ready by the time it asks
    merged = await _take(stream)
    assert (merged.text, merged.completion_tokens, merged.finish_reason) == ("lo, world", 5, None)
    source.gates[2].set()
    last = await _take(stream)
    assert (last.text, last.prompt_tokens, last.completion_tokens, last.finish_reason) == ("!", 7, 6, "stop")
    with pytest.raises(StopAsyncIteration):
        await _take(stream)
    assert source.finished


async def test_merging_is_bounded_by_count_and_characters() -> None:
    source = ScriptedDeltas([list("abcdefg")])
    source.gates[0].set()
    await asyncio.sleep(0)
    assert [d.text async for d in coalesce_deltas(source, max_deltas=3)] == ["abc", "def", "g"]

    source = ScriptedDeltas([["xx", "yy", "zz", "w"]])
    source.gates[0].set()
    assert [d.text async for d in coalesce_deltas(source, max_chars=3)] == ["xxyy", "zzw"]


async def test_an_engine_error_comes_after_the_deltas_before_it() -> None:
    source = ScriptedDeltas([["a", "b"]], error=EngineUnavailableError("engine died"))
    source.gates[0].set()
    seen: list[str] = []
    with pytest.raises(EngineUnavailableError, match="engine died"):
        async for delta in coalesce_deltas(source):
            seen.append(delta.text)
    assert "".join(seen) == "ab"


async def test_closing_the_stream_closes_the_engine_stream_while_it_waits() -> None:
    source = ScriptedDeltas([["first"], ["never sent"]])
    stream = coalesce_deltas(source)
    source.gates[0].set()
    assert (await _take(stream)).text == "first"
    await stream.aclose()  # the caller went away while the engine works on the next token
    assert source.closed and not source.finished


async def test_closing_the_stream_closes_the_engine_stream_when_the_buffer_is_full() -> None:
    source = ScriptedDeltas([["t"] * 10])
    stream = coalesce_deltas(source, max_deltas=2)
    source.gates[0].set()
    assert (await _take(stream)).text == "tt"
    await asyncio.sleep(0.01)  # the reader is parked on a full buffer, not inside the engine stream
    await stream.aclose()
    assert source.closed and not source.finished
