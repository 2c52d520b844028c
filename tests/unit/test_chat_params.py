"""Every field of a chat request is honoured or refused with a 400 that names it; structured output.

In-process (httpx's ASGI transport) on a scripted engine, real Redis and the real rails, and the official `openai`
client over real HTTP for `response_format`. Refused requests reach no engine and leave the server healthy. Guided
decoding itself (the output held to the schema) is vLLM's: tests/integration/test_openai_api.py checks it there.
"""

import json

import httpx
import jsonschema
import openai
import pydantic
import pytest

from chimera.config import ChimeraConfig
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import local_config

USER = [{"role": "user", "content": "Tell me about Ada Lovelace."}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
    "required": ["name", "born"],
    "additionalProperties": False,
}
BAD_BOUND = {"type": "object", "properties": {"a": {"minimum": "x"}}}  # a bound must be a number
DEEP: dict[str, object] = {"type": "object"}
for _ in range(400):  # fits JSON's nesting limit, not the schema checker's recursion
    DEEP = {"type": "object", "properties": {"a": DEEP}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    return local_config(tmp_path_factory.mktemp("chimera-params"))


REFUSED = [  # (extra body, the param the 400 names, its code)
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
     "tools.0.function.parameters", "invalid_json_schema"),
    ({"tools": [TOOL, TOOL]}, "tools.1.function.name", "invalid_value"),
    ({"tools": [{"type": "retrieval", "function": TOOL["function"]}]}, "tools.0.type", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools.0.function.name", "invalid_value"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "absent"}}}, "tool_choice",
     "invalid_value"),
    ({"tool_choice": "required"}, "tool_choice", "invalid_value"),
    ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice", "invalid_value"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls", "invalid_value"),
    ({"model": "chimera", "tools": [TOOL]}, "tools", "unsupported_parameter"),
    ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_2",
                                                                        "content": "1815"}]},
     "messages.2.tool_call_id", "invalid_value"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "lookup",
                                                                                     "arguments": "{1815"}}]}]},
     "messages.1.tool_calls.0.function.arguments", "invalid_value"),
    ({"messages": [*USER, {"role": "user", "content": "hi", "tool_calls": [CALL]}]}, "messages.1.tool_calls",
     "invalid_value"),
    ({"logprobs": True}, "logprobs", "unsupported_parameter"),
    ({"logprobs": False, "top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
    ({"n": 2}, "n", "invalid_value"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"presence_penalty": 2.5}, "presence_penalty", "invalid_value"),
    ({"frequency_penalty": -3}, "frequency_penalty", "invalid_value"),
    ({"frobnicate": True}, "frobnicate", "unrecognized_parameter"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "unrecognized_parameter"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"response_format": {"type": "json_object", "json_schema": {"name": "p", "schema": PERSON}}}, "response_format",
     "invalid_value"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "person"}}},
     "response_format.json_schema.schema", "invalid_value"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "objekt"}}}},
     "response_format.json_schema.schema", "invalid_json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": BAD_BOUND}}},
     "response_format.json_schema.schema", "invalid_json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"$schema": 5}}}},
     "response_format.json_schema.schema", "invalid_json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": DEEP}}},
     "response_format.json_schema.schema", "invalid_json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": PERSON}}},
     "response_format.json_schema.name", "invalid_value"),
    ({"model": "chimera", "response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"model": "chimera-team", "response_format": {"type": "json_schema",
                                                   "json_schema": {"name": "p", "schema": PERSON}}},
     "response_format", "unsupported_parameter"),
    ({"messages": [*USER, {"role": "assistant", "content": "Looking it up."}, {"role": "tool", "content": "1815"}]},
     "messages.2.tool_call_id", "invalid_value"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "param", "code"), REFUSED, ids=[r[1] + ":" + r[2] for r in REFUSED])
async def test_a_parameter_that_would_not_be_honoured_is_a_400_naming_it(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient], extra: dict[str, object], param: str, code: str
) -> None:
    _, engine, http = scripted_stack
    response = await http.post("/v1/chat/completions", json={"model": "chimera-chat", "messages": USER, **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert param.split(".")[-1] in error["message"] or code == "invalid_json_schema", error
    assert engine.requests == []  # refused before any generation
    assert (await http.get("/healthz")).status_code == 200
    engine.replies.append("Still here.")
    ok = await http.post("/v1/chat/completions", json={"model": "chimera-chat", "messages": USER})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "Still here."


async def test_sampling_parameters_reach_the_engine(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append("She wrote the first program. And more.")
    body = {"model": "chimera-text", "messages": USER, "seed": 7, "stop": [". And"], "presence_penalty": 0.5,
            "frequency_penalty": -0.25, "temperature": 0.3, "top_p": 0.9, "user": "end-user-42"}  # fmt: skip
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "She wrote the first program"
    sent = engine.requests[-1]
    assert (sent.seed, sent.stop, sent.presence_penalty, sent.frequency_penalty) == (7, (". And",), 0.5, -0.25)
    assert (sent.temperature, sent.top_p, sent.json_schema) == (0.3, 0.9, None)


async def test_tools_the_model_must_not_call_are_accepted(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append("No lookup needed.")
    body = {"model": "chimera-chat", "messages": USER, "tools": [TOOL], "tool_choice": "none",
            "parallel_tool_calls": False, "logprobs": False}  # fmt: skip
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "No lookup needed."


async def test_json_mode_asks_the_engine_for_a_json_object(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    _, engine, http = scripted_stack
    engine.replies.append('{"name": "Ada"}')
    body = {"model": "auto", "messages": USER, "response_format": {"type": "json_object"}}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"name": "Ada"}
    assert engine.requests[-1].json_schema == {"type": "object"}
    engine.replies.append("plain")
    text = {"model": "chimera-chat", "messages": USER, "response_format": {"type": "text"}}
    assert (await http.post("/v1/chat/completions", json=text)).status_code == 200
    assert engine.requests[-1].json_schema is None


async def test_the_openapi_document_describes_the_fields_and_refuses_others(
    scripted_stack: tuple[Service, ScriptedEngine, httpx.AsyncClient],
) -> None:
    document = (await scripted_stack[2].get("/openapi.json")).json()
    body = document["components"]["schemas"]["ChatCompletionRequest"]
    assert body["additionalProperties"] is False
    described = {"response_format", "presence_penalty", "frequency_penalty", "logprobs", "tools", "seed", "user"}
    assert described <= set(body["properties"])
    assert "schema" in document["components"]["schemas"]["JsonSchemaSpec"]["properties"]
    for path in ("/v1/embeddings", "/v1/models/{model_id}", "/v1/sessions", "/v1/sessions/{session_id}"):
        assert path in document["paths"]


class Person(pydantic.BaseModel):
    name: str
    born: int


def test_the_openai_client_gets_json_of_its_schema(scripted_url: tuple[str, ScriptedEngine]) -> None:
    url, engine = scripted_url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    engine.replies.append('{"name": "Ada Lovelace", "born": 1815}')
    completion = client.chat.completions.create(
        model="chimera-text",
        messages=USER,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )
    answer = json.loads(completion.choices[0].message.content or "")
    jsonschema.validate(answer, PERSON)
    assert engine.requests[-1].json_schema == PERSON
    engine.replies.append('{"name": "Ada Lovelace", "born": 1815}')
    parsed = client.chat.completions.parse(model="chimera-chat", messages=USER, response_format=Person)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed == Person(name="Ada Lovelace", born=1815)
    sent = engine.requests[-1].json_schema
    assert sent is not None and set(sent["required"]) == {"name", "born"}  # the client's schema of `Person`
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="chimera-chat", messages=USER, extra_body={"best_of": 3})  # type: ignore[arg-type]
    assert refused.value.code == "unrecognized_parameter" and refused.value.param == "best_of"
