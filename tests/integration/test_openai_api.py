"""The official OpenAI client against a real Chimera server: chat, streaming, usage, models, headers."""

import json
import time

import jsonschema
import openai
import pytest

from tests.integration.conftest import TestServer


@pytest.fixture(scope="module")
def client(server: TestServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_lists_agent_router_and_experts(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {
        "chimera",
        "chimera-react",
        "chimera-team",
        "auto",
        "chimera-code",
        "chimera-math",
        "chimera-text",
        "chimera-chat",
        "all-minilm-l6-v2",
    }


def test_non_stream_answers_paris_with_usage_and_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chimera-chat",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
    )
    completion = raw.parse()
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason in {"stop", "length"}
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert raw.headers["x-chimera-expert"] == "chat"
    assert float(raw.headers["x-chimera-route-confidence"]) == 1.0
    assert len(raw.headers["x-chimera-trace-id"]) == 32


def test_auto_routes_and_says_where(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Write a Python function that adds two numbers."}],
        max_tokens=16,
    )
    assert raw.headers["x-chimera-expert"] == "code"
    assert raw.parse().choices[0].message.content


def test_stream_is_incremental_with_one_finish_chunk_and_usage_last(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chimera-text",
        messages=[{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
        max_tokens=64,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals, chunks = [], []
    for chunk in stream:
        arrivals.append(time.monotonic())
        chunks.append(chunk)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 10
    finishes = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 10
    assert all(c.usage is None for c in chunks[:-1])
    # incremental: the first token came well before the last one (64 tokens take a while on a CPU)
    first = arrivals[chunks.index(content_chunks[0])]
    assert arrivals[-1] - first > 5 * (first - arrivals[0]) or arrivals[-1] - first > 0.3


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="chimera-chat", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1


def test_max_tokens_is_honoured(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chimera-text", messages=[{"role": "user", "content": "Write a long essay about rivers."}], max_tokens=5
    )
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].finish_reason == "length"


def test_json_schema_output_is_held_to_the_schema_by_guided_decoding(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
              "additionalProperties": False}  # fmt: skip
    completion = client.chat.completions.create(
        model="chimera-chat",
        messages=[{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}},
        max_tokens=48,
        temperature=0,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                          "required": ["city"], "additionalProperties": False}}}  # fmt: skip


def test_the_packaged_model_calls_a_required_tool_with_schema_valid_arguments(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = client.chat.completions.create(
        model="chimera-chat", messages=ask, tools=[WEATHER], tool_choice="required", max_tokens=64, temperature=0
    )
    calls = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls" and calls
    for call in calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    replies = [{"role": "tool", "tool_call_id": c.id, "content": "18 C and sunny"} for c in calls]
    history = [*ask, completion.choices[0].message.model_dump(exclude_none=True), *replies]
    answer = client.chat.completions.create(model="chimera-chat", messages=history, tools=[WEATHER], max_tokens=32)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls  # the packaged model's pick; both are valid
