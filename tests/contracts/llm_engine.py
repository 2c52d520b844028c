"""Contract of `LLMEngine` (models/engine/base.py): what every engine streams, refuses and reports.

The properties: `generate` streams `GenerationDelta`s of which only the last carries `finish_reason`, with the
prompt's token count and a running completion count; `max_tokens` and `stop` end generation; closing the stream
early frees the request (the engine's `running` load goes back to 0) and `abort` stops a running one, while an
unknown id is ignored; a prompt that does not fit raises `PromptTooLongError` before the first delta; concurrent
requests stream independently; `json_schema` output parses and satisfies the schema; `health` names the model
and its load; an engine that is not running raises `EngineUnavailableError` and reports itself unhealthy.

A backend runs it by subclassing `LLMEngineContract` in a `test_*.py` file and providing:

    engine          a started engine. Tests leave it idle, so one engine may serve the whole class or module
                    (an expensive engine should: scope="module"; an async fixture then needs the same loop
                    scope, `pytestmark = pytest.mark.asyncio(loop_scope="module")`).
    stopped_engine  an engine of the same kind that is not running (never started, or shut down).
    context_window  the prompt tokens `engine` accepts (a prompt of that many words does not fit).

Generation uses `ignore_eos=True` where a test needs an exact length, and a handful of tokens throughout, so the
suite costs a real engine seconds. A backend that cannot model a property overrides that test with a
`pytest.skip` saying why it does not apply.
"""

import asyncio
import json
import uuid

import pytest

from chimera.messages import ChatMessage
from chimera.models.engine.base import (
    EngineHealth,
    EngineUnavailableError,
    GenerationDelta,
    GenerationRequest,
    LLMEngine,
    PromptTooLongError,
)

COUNTING = [ChatMessage(role="user", content="Count from one to twenty in words, separated by spaces.")]


def request(messages: list[ChatMessage] = COUNTING, *, max_tokens: int = 8, **fields: object) -> GenerationRequest:
    """A greedy request with a fresh id."""
    return GenerationRequest.model_validate(
        {"request_id": f"contract-{uuid.uuid4().hex}", "messages": messages, "max_tokens": max_tokens, **fields}
    )


async def collect(engine: LLMEngine, req: GenerationRequest) -> list[GenerationDelta]:
    return [delta async for delta in engine.generate(req)]


async def idle(engine: LLMEngine, timeout_s: float = 10.0) -> EngineHealth:
    """The engine's health once nothing runs on it (freeing a request may take an engine a moment)."""
    for _ in range(int(timeout_s / 0.05)):
        health = await engine.health()
        if not health.running:
            break
        await asyncio.sleep(0.05)
    return health


class LLMEngineContract:
    """Run against every `LLMEngine`; see the module docstring for the fixtures a subclass provides."""

    async def test_streams_deltas_whose_last_alone_finishes_with_counts(self, engine: LLMEngine) -> None:
        deltas = await collect(engine, request(max_tokens=6, ignore_eos=True))

        assert deltas and all(isinstance(d, GenerationDelta) for d in deltas)
        assert [d.finish_reason for d in deltas[:-1]] == [None] * (len(deltas) - 1)
        last = deltas[-1]
        assert last.finish_reason == "length"
        assert last.prompt_tokens > 0 and {d.prompt_tokens for d in deltas} == {last.prompt_tokens}
        counts = [d.completion_tokens for d in deltas]
        assert counts == sorted(counts) and last.completion_tokens == 6
        assert "".join(d.text for d in deltas).strip()

    @pytest.mark.parametrize("max_tokens", [1, 4])
    async def test_max_tokens_caps_the_completion(self, engine: LLMEngine, max_tokens: int) -> None:
        exact = (await collect(engine, request(max_tokens=max_tokens, ignore_eos=True)))[-1]
        assert (exact.finish_reason, exact.completion_tokens) == ("length", max_tokens)
        natural = (await collect(engine, request(max_tokens=max_tokens)))[-1]
        assert natural.finish_reason in ("stop", "length") and 0 < natural.completion_tokens <= max_tokens

    async def test_a_stop_string_ends_the_text_before_it(self, engine: LLMEngine) -> None:
        full = "".join(d.text for d in await collect(engine, request(max_tokens=12, temperature=0.0)))
        words = full.split()
        assert len(words) >= 3, f"premise: a greedy completion of a few words, got {full!r}"
        stop = words[2]
        stopped = await collect(engine, request(max_tokens=12, temperature=0.0, stop=(stop,)))

        assert stopped[-1].finish_reason == "stop"
        assert "".join(d.text for d in stopped) == full[: full.index(stop)]

    async def test_closing_the_stream_early_frees_the_request(self, engine: LLMEngine) -> None:
        stream = engine.generate(request(max_tokens=64, ignore_eos=True))
        first = await anext(stream)
        assert first.finish_reason is None
        assert (await engine.health()).running >= 1

        await stream.aclose()  # what a consumer that goes away does

        assert (await idle(engine)).running == 0
        assert (await collect(engine, request(max_tokens=2, ignore_eos=True)))[-1].completion_tokens == 2

    async def test_abort_stops_a_running_request(self, engine: LLMEngine) -> None:
        req = request(max_tokens=64, ignore_eos=True)
        stream = engine.generate(req)
        deltas = [await anext(stream)]

        await engine.abort(req.request_id)
        deltas += [d async for d in stream]

        assert deltas[-1].finish_reason == "abort"
        assert deltas[-1].completion_tokens < 64
        assert (await idle(engine)).running == 0

    async def test_abort_of_an_unknown_request_is_ignored(self, engine: LLMEngine) -> None:
        await engine.abort(f"never-sent-{uuid.uuid4().hex}")

        assert (await engine.health()).healthy
        assert (await collect(engine, request(max_tokens=2, ignore_eos=True)))[-1].completion_tokens == 2

    async def test_a_prompt_too_long_raises_before_the_first_delta(
        self, engine: LLMEngine, context_window: int
    ) -> None:
        too_long = [ChatMessage(role="user", content="word " * context_window)]
        stream = engine.generate(request(too_long, max_tokens=4))

        with pytest.raises(PromptTooLongError):
            await anext(stream)

        assert (await idle(engine)).running == 0
        assert (await collect(engine, request(max_tokens=2, ignore_eos=True)))[-1].completion_tokens == 2

    async def test_concurrent_requests_stream_independently(self, engine: LLMEngine) -> None:
        lengths = [2, 5, 3]
        results = await asyncio.gather(*(collect(engine, request(max_tokens=n, ignore_eos=True)) for n in lengths))
        assert [r[-1].completion_tokens for r in results] == lengths
        assert all(r[-1].finish_reason == "length" for r in results)

    async def test_json_schema_output_satisfies_the_schema(self, engine: LLMEngine) -> None:
        schema = {
            "type": "object",
            "properties": {"answer": {"enum": ["yes", "no"]}},
            "required": ["answer"],
            "additionalProperties": False,
        }
        ask = [ChatMessage(role="user", content="Is the sky blue? Reply in JSON.")]
        deltas = await collect(engine, request(ask, max_tokens=24, json_schema=schema))

        assert deltas[-1].finish_reason == "stop"
        assert json.loads("".join(d.text for d in deltas)) in ({"answer": "yes"}, {"answer": "no"})

    async def test_health_names_the_model_and_an_idle_load(self, engine: LLMEngine) -> None:
        health = await idle(engine)
        assert isinstance(health, EngineHealth)
        assert health.healthy and health.model and health.running == 0

    async def test_an_engine_that_is_not_running_is_unavailable(self, stopped_engine: LLMEngine) -> None:
        assert not (await stopped_engine.health()).healthy
        with pytest.raises(EngineUnavailableError):
            await anext(stopped_engine.generate(request()))
