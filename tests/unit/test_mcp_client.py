"""Chimera as an MCP client: the tools of a real MCP server (tests/unit/mcp_test_server.py, over stdio) are
discovered, offered to the agent beside Chimera's own, and called under the tool rails; a misbehaving server or
tool is contained with a clear error. Real rails (YARA), real Redis; a scripted engine for the agent's replies.
"""

import copy
import json
import sys
from pathlib import Path

import pytest

from chimera.config import ChimeraConfig, McpServerConfig
from chimera.guardrails.nemo_rails import NemoRails
from chimera.guardrails.tool_input import ToolInputScanner
from chimera.tools.base import ToolError
from chimera.tools.mcp import discover
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, local_config

SERVER = McpServerConfig(
    name="local", command=[sys.executable, str(Path(__file__).with_name("mcp_test_server.py"))], timeout_s=20,
    max_output_chars=1000,
)  # fmt: skip


async def test_tools_are_discovered_and_bad_schemas_or_servers_left_out(nemo_rails: NemoRails) -> None:
    gone = McpServerConfig(name="gone", command=[sys.executable, "-c", "raise SystemExit(3)"], timeout_s=10)
    tools = await discover([SERVER, gone], nemo_rails)
    assert set(tools) == {"local.add", "local.echo", "local.repeat", "local.hang"}  # not local.broken, nothing of gone
    assert tools["local.add"].args_schema()["required"] == ["a", "b"]
    assert await tools["local.add"].call({"a": 2, "b": 40}) == "42"
    only = await discover([SERVER.model_copy(update={"tools": ["add"]})], nemo_rails)
    assert set(only) == {"local.add"}


async def test_a_call_is_held_to_its_schema_timeout_size_and_the_tool_rail(nemo_rails: NemoRails) -> None:
    tools = await discover([SERVER], nemo_rails)
    with pytest.raises(ToolError, match=r"invalid arguments for local\.add"):
        await tools["local.add"].call({"a": "two", "b": 1})
    with pytest.raises(ToolError, match="did not answer within 20 s"):
        await tools["local.hang"].call({})
    with pytest.raises(ToolError, match="answered 5000 characters; at most 1000"):
        await tools["local.repeat"].call({"n": 5000})
    assert await tools["local.repeat"].call({"n": 3}) == "xxx"
    guarded = copy.copy(nemo_rails)  # the same rails, with NeMo's code rules on local.echo (`guardrails.tool_rules`)
    guarded.scanner = ToolInputScanner({"local.echo": ("code",)})
    echo = (await discover([SERVER], guarded))["local.echo"]
    assert await echo.call({"text": "hello"}) == "hello"
    with pytest.raises(ToolError, match="rejected by the tool_input_yara rail"):
        await echo.call({"text": "__import__('os').system('rm -rf /')"})


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    offered = {"react_tools": ["calculator", "hybrid_search", "recall", "local.add"]}  # the agent's allow-list
    return local_config(
        tmp_path_factory.mktemp("chimera-mcp-client"), tools={"mcp_servers": [SERVER.model_dump()]}, agent=offered
    )


async def test_the_agent_calls_an_mcp_tool_and_answers_from_its_result(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails
) -> None:
    decision = json.dumps({"tool": "local.add", "arguments": {"a": 19, "b": 23}})
    engine = ScriptedEngine([decision, json.dumps({"tool": "none"}), "The sum is 42."])
    async with in_process(config, engine, redis_url, nemo_rails) as (service, http):
        assert "local.add" in service.chat.runs.tools
        body = {"model": "chimera", "messages": [{"role": "user", "content": "Use the add tool on 19 and 23."}]}
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("The sum is 42.")
    first_decision = engine.requests[0]
    assert first_decision.json_schema is not None and "local.add" in json.dumps(first_decision.json_schema)
    heard = "\n".join(m.content for m in engine.requests[-1].messages)
    assert "42" in heard  # the tool's result reached the answer
