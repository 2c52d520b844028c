"""Chimera as an MCP server (the official `mcp` SDK), streamable HTTP at `/mcp` on the API's own port.

Same auth as every route (the API's middleware runs first, so a tool acts as the caller's principal), stateless
(each POST stands alone: any API replica answers it), JSON responses. The tools are the agents' own, scoped like
theirs: `hybrid_search` reads the caller's tenant and groups, `graph_query` only for principals that may read the
whole graph, `recall` only the caller's sessions; `submit_task` / `get_task` are the task API's.
"""

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from chimera.errors import ChimeraError
from chimera.identity.principal import Principal
from chimera.sessions import owned
from chimera.tasks.service import TaskSubmission
from chimera.tools.base import Scope, SourcedResult, Tool
from chimera.tools.recall import Recall
from chimera.tools.search.types import Citation

if TYPE_CHECKING:
    from chimera.service import Service

PATH = "/mcp"


def mcp_app(service: "Service") -> tuple[Starlette, MCPServer]:
    """The MCP server's ASGI app (its one route is `PATH`); its session manager must run for the app's life
    (`server.session_manager.run()`)."""
    server = MCPServer("chimera", instructions="Search the caller's documents, query the knowledge graph, recall "
                       "a session's memory, and run long agent tasks on Chimera.")  # fmt: skip
    runs = service.chat.runs

    def principal(ctx: Context) -> Principal:
        request = ctx.request_context.request
        found = getattr(getattr(request, "state", None), "principal", None)
        if not isinstance(found, Principal):  # the API's middleware sets it; anything else is a wiring bug
            raise MCPToolError("no authenticated principal for this request")
        return found

    def scoped(name: str, ctx: Context) -> Tool:
        who = principal(ctx)
        tool = runs.tools.get(name)
        mine = tool.scoped(Scope(who.search_filters, whole_graph=who.is_admin)) if tool is not None else None
        if mine is None or not mine.available():
            raise MCPToolError(f"{name} is not available to {who.id}")
        return mine

    async def run(tool: Tool, arguments: dict[str, Any]) -> Any:
        try:
            result = await tool.call(arguments)
        except ChimeraError as e:
            raise MCPToolError(str(e)) from e
        if isinstance(result, SourcedResult):
            return {"passages": [Citation.of(n, p).as_dict() for n, p in enumerate(result.passages, 1)]}
        return {"result": result}

    @server.tool(description="Search the caller's documents (BM25 + dense + graph); passages with their sources.")
    async def hybrid_search(query: str, ctx: Context) -> dict[str, Any]:
        return await run(scoped("hybrid_search", ctx), {"query": query})

    @server.tool(description="One read-only Cypher statement on the knowledge graph (admins only).")
    async def graph_query(cypher: str, ctx: Context, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await run(scoped("graph_query", ctx), {"cypher": cypher, "params": params or {}})

    @server.tool(description="Recall what one of the caller's sessions said or read (its long-context memory).")
    async def recall(session_id: str, query: str, ctx: Context) -> dict[str, Any]:
        who = principal(ctx)
        if runs.memory is None:
            raise MCPToolError("this server has no long-context memory")
        try:
            session = await owned(service.chat.sessions, session_id, who, "mcp_recall")
        except ChimeraError as e:
            raise MCPToolError(str(e)) from e
        return await run(Recall(runs.memory, session, max_tokens=runs.recall_max_tokens), {"query": query})

    @server.tool(description="Queue a long agent task (POST /v1/tasks, kind agent); returns the task to poll.")
    async def submit_task(prompt: str, ctx: Context, model: str = "chimera") -> dict[str, Any]:
        submission = TaskSubmission("agent", {"prompt": prompt}, model)
        try:
            record, _ = await service.tasks.submit(principal(ctx), submission)
        except ChimeraError as e:
            raise MCPToolError(str(e)) from e
        return record.as_public()

    @server.tool(description="A task's status, and its result once it has ended.")
    async def get_task(task_id: str, ctx: Context) -> dict[str, Any]:
        try:
            return (await service.tasks.get(task_id, principal(ctx))).as_public()
        except ChimeraError as e:
            raise MCPToolError(str(e)) from e

    # bearer keys authenticate every call, so the Host/Origin allow-list (DNS rebinding) would only refuse
    # clients that reach the server under another name (a proxy, a cluster address)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path=PATH, stateless_http=True, json_response=True, transport_security=security
    )
    return app, server
