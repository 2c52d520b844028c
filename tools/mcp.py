"""Tools of external MCP servers (the official `mcp` client), offered to the agents beside Chimera's own.

Each configured server (`tools.mcp_servers`: a stdio command or a streamable-HTTP URL) is asked for its tools once,
when the service starts; a server that cannot be reached, or a tool whose input schema is not valid JSON Schema,
is left out with a warning (the others still serve). Every call opens its own client session, so a server that
restarts or dies costs one failed call, not the agent. A call passes the same rails as the built-in tools that
reach outside: its arguments are scanned by the tool-input rail (YARA) and checked against the tool's schema,
it must finish within `timeout_s`, and a result longer than `max_output_chars` is refused.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import jsonschema
from mcp import Client, StdioServerParameters
from pydantic import BaseModel, ConfigDict

from chimera.config import McpServerConfig
from chimera.guardrails.base import Rails
from chimera.tools.base import SourcedResult, Tool, ToolError

log = logging.getLogger(__name__)


class _AnyArguments(BaseModel):
    model_config = ConfigDict(extra="allow")


class McpTool(Tool):
    """One tool of one MCP server; a subclass per tool (`discover`) carries its name, description and schema."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]] = _AnyArguments
    remote_name: ClassVar[str]
    input_schema: ClassVar[dict[str, Any]]

    def __init__(self, server: McpServerConfig, rails: Rails) -> None:
        self.server, self.rails = server, rails

    @classmethod
    def args_schema(cls) -> dict[str, Any]:
        return cls.input_schema

    async def call(self, arguments: dict[str, Any]) -> str | SourcedResult:
        """Check the arguments (schema, then the tool-input rail), call the server within the timeout.

        Raises:
            ToolError: invalid or refused arguments, the server failed, timed out, or answered too much.
        """
        try:
            jsonschema.validate(arguments, self.input_schema)
        except jsonschema.ValidationError as e:
            raise ToolError(f"invalid arguments for {self.name}: {e.message}") from e
        verdict = await self.rails.check_tool_input(self.name, json.dumps(arguments, ensure_ascii=False))
        if not verdict.allowed:
            raise ToolError(f"rejected by the {verdict.rail} rail before running: {verdict.reason}")
        try:
            async with asyncio.timeout(self.server.timeout_s), connected(self.server) as client:
                result = await client.call_tool(self.remote_name, arguments)
        except TimeoutError as e:
            raise ToolError(f"{self.name} did not answer within {self.server.timeout_s:g} s") from e
        except Exception as e:  # the server's failure, whatever its kind, is the model's observation
            raise ToolError(f"{self.name} failed: {reason(e)}") from e
        text = "\n".join(getattr(block, "text", "") or "" for block in result.content)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content, ensure_ascii=False)
        if result.is_error:
            raise ToolError(f"{self.name} reported an error: {text[:500]}")
        if len(text) > self.server.max_output_chars:
            raise ToolError(f"{self.name} answered {len(text)} characters; at most {self.server.max_output_chars}")
        return text

    async def run(self, args: Any) -> str | SourcedResult:
        return await self.call(args.model_dump())


def reason(e: BaseException) -> str:
    """What went wrong, from the first leaf of the exception groups the client's task groups raise."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


@contextlib.asynccontextmanager
async def connected(server: McpServerConfig) -> AsyncIterator[Client]:
    """A client session with `server` (stdio: the command is started, and stopped at the end)."""
    if server.command is not None:
        target: Any = StdioServerParameters(command=server.command[0], args=server.command[1:])
        async with Client(target) as client:
            yield client
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=server.headers, timeout=server.timeout_s) as http,
        Client(streamable_http_client(server.url or "", http_client=http)) as client,
    ):
        yield client


async def discover(servers: list[McpServerConfig], rails: Rails) -> dict[str, Tool]:
    """The tools of every server that answers, by `<server>.<tool>`."""
    found: dict[str, Tool] = {}
    for server in servers:
        try:
            async with asyncio.timeout(server.timeout_s), connected(server) as client:
                listed = (await client.list_tools()).tools
        except Exception as e:  # one unreachable server must not keep the others (or the service) down
            log.warning("MCP server %s left out: cannot list its tools: %s", server.name, reason(e))
            continue
        for remote in listed:
            if server.tools is not None and remote.name not in server.tools:
                continue
            schema = dict(remote.input_schema or {"type": "object"})
            try:
                jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(
                    schema
                )
            except jsonschema.SchemaError as e:
                log.warning("MCP tool %s.%s left out: invalid input schema: %s", server.name, remote.name, e.message)
                continue
            name = f"{server.name}.{remote.name}"
            attributes = {"name": name, "description": remote.description or remote.name,
                          "remote_name": remote.name, "input_schema": schema}  # fmt: skip
            cls = type(f"McpTool_{server.name}_{remote.name}", (McpTool,), attributes)
            found[name] = cls(server, rails)
        log.info("MCP server %s: %d tools", server.name, sum(1 for n in found if n.startswith(server.name + ".")))
    return found
