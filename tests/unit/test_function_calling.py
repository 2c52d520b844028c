"""Function calling on the expert models: the client's tools become a JSON schema the expert decides under, its
calls come back as OpenAI `tool_calls` (JSON and streamed), and the client's `role: tool` replies continue the
conversation.

On a scripted engine (the replies are the test's choice; that guided decoding holds a real model to the schema is
vLLM's, checked in tests/integration/test_openai_api.py), real Redis and the real rails; the official `openai`
client over real HTTP for the round trip.
"""

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from chimera.config import ChimeraConfig
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import local_config

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a city now."}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def decided(*calls: tuple[str, dict[str, Any]]) -> str:
    """A reply as guided decoding shapes it."""
    return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in calls]})


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    return local_config(tmp_path_factory.mktemp("chimera-tools"))


async def test_a_call_comes_back_as_tool_calls_decoded_under_the_tools_schema(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append(decided(("get_weather", {"city": "Paris"})))
    response = await http.post(
        "/v1/chat/completions", json={"model": "chimera-chat", "messages": ASK, "tools": [WEATHER, TIME]}
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"].get("content") is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == ("get_weather", {"city": "Paris"})
    schema = engine.requests[-1].json_schema
    assert schema is not None
    jsonschema.validate(json.loads(decided(("get_weather", {"city": "Paris", "unit": "celsius"}))), schema)
    jsonschema.validate({"tool_calls": []}, schema)  # auto: answering in text is allowed
    for wrong in ({"tool_calls": [{"name": "get_weather", "arguments": {}}]},  # city is required
                  {"tool_calls": [{"name": "send_mail", "arguments": {}}]}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
    system = engine.requests[-1].messages[0].content
    assert "get_weather" in system and "get_time" in system  # the tools are described to the model


async def test_auto_without_a_call_answers_in_text_and_the_tool_reply_continues(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    call = {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    replied = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_abc", "content": "18 C and sunny"}]  # fmt: skip
    engine.replies += [decided(), "It is 18 C and sunny in Paris."]
    response = await http.post(
        "/v1/chat/completions", json={"model": "chimera-chat", "messages": replied, "tools": [WEATHER]}
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("stop", "It is 18 C and sunny in Paris.")
    assert "tool_calls" not in choice["message"]
    decision, answer = engine.requests[-2:]
    assert decision.json_schema is not None and answer.json_schema is None
    heard = [m.content for m in answer.messages]
    assert "Result of get_weather: 18 C and sunny" in heard
    assert any('"get_weather"' in m and "Paris" in m for m in heard)  # the call, as the model made it
    assert "get_weather" not in answer.messages[0].content  # the text answer is not asked for JSON
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == len(decided().split()) + len(choice["message"]["content"].split())


async def test_required_named_and_single_calls_shape_the_schema(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack

    async def schema_of(**extra: Any) -> dict[str, Any]:
        engine.replies.append(decided(("get_weather", {"city": "Oslo"})))
        body = {"model": "auto", "messages": ASK, "tools": [WEATHER, TIME], **extra}
        response = await http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"] == "tool_calls"
        schema = engine.requests[-1].json_schema
        assert schema is not None
        return schema

    two = decided(("get_weather", {"city": "Oslo"}), ("get_time", {}))
    required = await schema_of(tool_choice="required")
    jsonschema.validate(json.loads(two), required)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": []}, required)
    single = await schema_of(tool_choice="required", parallel_tool_calls=False)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(two), single)
    named = await schema_of(tool_choice={"type": "function", "function": {"name": "get_time"}})
    jsonschema.validate(json.loads(decided(("get_time", {}))), named)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(decided(("get_weather", {"city": "Oslo"}))), named)


async def test_a_decision_cut_short_by_max_tokens_keeps_its_complete_calls(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append(decided(("get_weather", {"city": "Paris"})))
    body = {"model": "chimera-chat", "messages": ASK, "tools": [WEATHER], "max_tokens": 2}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    engine.replies.append(decided(("get_weather", {"city": "Paris"}), ("get_time", {})))
    body = {"model": "chimera-chat", "messages": ASK, "tools": [WEATHER, TIME], "max_tokens": 7}  # cut in call 2
    choice = (await http.post("/v1/chat/completions", json=body)).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"  # the complete first call is kept
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]


async def test_a_streamed_call_arrives_as_openai_tool_call_deltas(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append(decided(("get_weather", {"city": "Paris"}), ("get_time", {})))
    body = {"model": "chimera-chat", "messages": ASK, "tools": [WEATHER, TIME], "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    choices = [json.loads(line[6:])["choices"][0] for line in lines]
    deltas = [c["delta"]["tool_calls"][0] for c in choices if "tool_calls" in c["delta"]]
    assert [d["index"] for d in deltas] == [0, 0, 1, 1]
    assert [d.get("id", "")[:5] for d in deltas[::2]] == ["call_", "call_"] and "id" not in deltas[1]
    assert [d["function"].get("name") for d in deltas] == ["get_weather", None, "get_time", None]
    assert json.loads(deltas[1]["function"]["arguments"]) == {"city": "Paris"}
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_the_openai_client_runs_a_tool_round_trip_streamed_and_not(scripted_url: tuple[str, ScriptedEngine]) -> None:
    url, engine = scripted_url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    tools: Any = [WEATHER]
    engine.replies.append(decided(("get_weather", {"city": "Paris", "unit": "celsius"})))
    first = client.chat.completions.create(model="chimera-chat", messages=ASK, tools=tools)  # type: ignore[arg-type]
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    engine.replies += [decided(), "Paris: 18 C, sunny."]
    history: Any = [*ASK, message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}]  # fmt: skip
    second = client.chat.completions.create(model="chimera-chat", messages=history, tools=tools)
    assert second.choices[0].message.content == "Paris: 18 C, sunny." and not second.choices[0].message.tool_calls

    engine.replies.append(decided(("get_weather", {"city": "Lyon"})))
    with client.chat.completions.stream(model="chimera-chat", messages=ASK, tools=tools) as stream:  # type: ignore[arg-type]
        for _ in stream:
            pass
        streamed = stream.get_final_completion()
    [call] = streamed.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Lyon"})
    assert streamed.choices[0].finish_reason == "tool_calls"


def test_a_langchain_tool_loop_completes_a_two_tool_task(scripted_url: tuple[str, ScriptedEngine]) -> None:
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now, in Celsius."""
        return f"18 C in {city}"

    @tool
    def to_fahrenheit(celsius: float) -> float:
        """Celsius to Fahrenheit."""
        return celsius * 9 / 5 + 32

    url, engine = scripted_url
    engine.replies += [decided(("get_weather", {"city": "Paris"})), decided(("to_fahrenheit", {"celsius": 18})),
                       decided(), "It is 64.4 F in Paris."]  # fmt: skip
    tools = {t.name: t for t in (get_weather, to_fahrenheit)}
    llm = ChatOpenAI(base_url=f"{url}/v1", api_key="unused", model="chimera-chat", max_retries=0)
    bound = llm.bind_tools(list(tools.values()))
    messages: list[BaseMessage] = [HumanMessage("What is the weather in Paris, in Fahrenheit?")]
    for _ in range(4):  # the loop every framework runs: call the model, run its tools, hand back the results
        reply = bound.invoke(messages)
        assert isinstance(reply, AIMessage)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            result = tools[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(str(result), tool_call_id=call["id"] or ""))
    assert reply.content == "It is 64.4 F in Paris."
    assert [m.content for m in messages if isinstance(m, ToolMessage)] == ["18 C in Paris", "64.4"]
    heard = [m.content for m in engine.requests[-1].messages]
    assert "Result of to_fahrenheit: 64.4" in heard and "Result of get_weather: 18 C in Paris" in heard
