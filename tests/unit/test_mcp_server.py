"""Chimera as an MCP server: the official `mcp` client over real HTTP (`/mcp`, streamable HTTP) lists Chimera's
tools and calls them as the principal of its API key. Real Redis, the real index (MiniLM) and rails; a scripted
engine (no tool here generates text).

Covers: the tool list; `hybrid_search` finds passages with their sources in the caller's tenant only;
`graph_query` is refused to a user and answered for an admin; `recall` of another key's session is refused;
`submit_task` queues an agent task the caller can read and another key cannot; no key is a 401.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from chimera.config import ChimeraConfig
from chimera.guardrails.nemo_rails import NemoRails
from chimera.tools.search.factory import build_ingestor, open_index
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import local_config, served

ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-01234567890", "admin-key-0123456789"
DOCS = {  # file name: (tenant, text)
    "acme-budget.md": ("acme", "# Zephyr\n\nThe Zephyr project budget is 4.2 million euros for 2027."),
    "globex-budget.md": ("globex", "# Zephyr\n\nThe Zephyr project budget is 9 million dollars at Globex."),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    data_dir = tmp_path_factory.mktemp("chimera-mcp")
    keys = [{"key": ALICE, "id": "alice", "tenant": "acme"}, {"key": BOB, "id": "bob", "tenant": "globex"},
            {"key": ADMIN, "id": "root", "role": "admin"}]  # fmt: skip
    config = local_config(data_dir, server={"api_keys": keys})
    folder = data_dir / "docs"
    folder.mkdir()
    with open_index(config.search, config.index_dir) as index:
        ingestor = build_ingestor(config.search, index, config.index_dir)
        for name, (tenant, text) in DOCS.items():
            (folder / name).write_text(text)
            assert ingestor.ingest([folder / name], tenant=tenant).count("added") == 1
    return config


@pytest.fixture(scope="module")
def url(config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails) -> Iterator[str]:
    with served(config, ScriptedEngine([]), redis_url, nemo_rails) as base:
        yield f"{base}/mcp"


@contextlib.asynccontextmanager
async def connected(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def call(url: str, key: str, tool: str, **arguments: Any) -> Any:
    async with connected(url, key) as client:
        return await client.call_tool(tool, arguments)


async def test_the_tools_are_listed_with_their_argument_schemas(url: str) -> None:
    async with connected(url, ALICE) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == {"hybrid_search", "graph_query", "recall", "submit_task", "get_task"}
    assert listed["hybrid_search"].input_schema["required"] == ["query"]
    assert set(listed["recall"].input_schema["required"]) == {"session_id", "query"}


async def test_search_finds_passages_with_sources_in_the_callers_tenant_only(url: str) -> None:
    for key, own, other in ((ALICE, "acme-budget.md", "globex"), (BOB, "globex-budget.md", "acme")):
        result = await call(url, key, "hybrid_search", query="Zephyr project budget")
        assert not result.is_error, result.content
        passages = result.structured_content["passages"]
        sources = {Path(p["source"]).name for p in passages}
        assert sources == {own}, passages
        assert passages[0]["n"] == 1 and "Zephyr" in passages[0]["text"]
        assert not any(other in p["source"] for p in passages)


async def test_the_graph_is_for_admins_and_sessions_for_their_owners(url: str) -> None:
    refused = await call(url, ALICE, "graph_query", cypher="MATCH (c:Chunk) RETURN count(c) AS n")
    assert refused.is_error and "not available to alice" in refused.content[0].text
    answered = await call(url, ADMIN, "graph_query", cypher="MATCH (c:Chunk) RETURN count(c) AS n")
    assert not answered.is_error, answered.content
    not_hers = await call(url, ALICE, "recall", session_id="bobs-session-1", query="budget")
    assert not_hers.is_error and "bobs-session-1" in not_hers.content[0].text


async def test_a_task_submitted_over_mcp_belongs_to_its_caller(url: str) -> None:
    submitted = await call(url, ALICE, "submit_task", prompt="What is 2 + 2?")
    assert not submitted.is_error, submitted.content
    task = submitted.structured_content
    assert task["kind"] == "agent" and task["status"] in ("queued", "running", "succeeded", "failed")
    mine = await call(url, ALICE, "get_task", task_id=task["id"])
    assert not mine.is_error and mine.structured_content["id"] == task["id"]
    theirs = await call(url, BOB, "get_task", task_id=task["id"])
    assert theirs.is_error


async def test_without_a_key_the_endpoint_is_401(url: str) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
