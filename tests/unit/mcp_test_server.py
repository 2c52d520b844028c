"""A small MCP server over stdio for the MCP client tests: two good tools, one that answers too much, one that
hangs, and one whose input schema is not valid JSON Schema."""

import asyncio

from mcp.server.mcpserver import MCPServer

server = MCPServer("test-tools")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Say the text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="Repeat a letter n times.")
def repeat(n: int) -> str:
    return "x" * n


@server.tool(description="Never answers.")
async def hang() -> str:
    await asyncio.sleep(3600)
    return "never"


@server.tool(description="Has a broken input schema.")
def broken(value: str) -> str:
    return value


broken_tool = server._tool_manager.get_tool("broken")
assert broken_tool is not None
broken_tool.parameters = {"type": "object", "properties": {"value": {"type": "strang"}}}  # no such JSON type

if __name__ == "__main__":
    server.run("stdio")
