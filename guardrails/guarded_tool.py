"""A tool behind the tool-input rail: what the agent sends it is scanned (YARA) before the tool runs."""

from typing import Any, ClassVar

from pydantic import BaseModel

from chimera.guardrails.base import Rails
from chimera.tools.base import Scope, SourcedResult, Tool, ToolError


class _GuardedTool(Tool):
    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]

    def __init__(self, inner: Tool, rails: Rails, field: str) -> None:
        self.inner, self.rails, self.field = inner, rails, field

    def available(self) -> bool:
        return self.inner.available()

    def scoped(self, scope: Scope) -> Tool | None:
        inner = self.inner.scoped(scope)
        if inner is None or inner is self.inner:
            return None if inner is None else self
        return type(self)(inner, self.rails, self.field)

    async def run(self, args: Any) -> str | SourcedResult:
        verdict = await self.rails.check_tool_input(self.name, str(getattr(args, self.field)))
        if not verdict.allowed:  # the model hears why, as it hears any tool error, and can try again
            raise ToolError(f"rejected by the {verdict.rail} rail before running: {verdict.reason}")
        return await self.inner.run(args)


def guard_tool(tool: Tool, rails: Rails, field: str) -> Tool:
    """`tool` with its `field` argument checked by `rails.check_tool_input` before every run; same name,
    description and arguments, so agents see no difference."""
    cls = type(tool)
    if field not in cls.Args.model_fields:
        raise ValueError(f"{cls.__name__} has no argument {field!r}")
    guarded = type(f"Guarded{cls.__name__}", (_GuardedTool,),
                   {"name": cls.name, "description": cls.description, "Args": cls.Args})  # fmt: skip
    return guarded(tool, rails, field)
