"""The tool seam: a name, a description, a pydantic argument model, and an async `run`."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from chimera.errors import ChimeraError
from chimera.tools.search.types import SearchFilters

if TYPE_CHECKING:
    from chimera.tools.search.types import RetrievedChunk


class ToolError(ChimeraError):
    """The tool could not do what it was asked; the message goes back to the model as an observation."""


@dataclass(frozen=True)
class SourcedResult:
    """A tool result made of document passages; the agent numbers them as citations and renders them."""

    passages: tuple["RetrievedChunk", ...]


@runtime_checkable
class Grounding(Protocol):
    """A tool that can find passages for a question nobody asked it to search (the agent's `ground` step)."""

    async def ground(self, question: str) -> SourcedResult | None: ...


@dataclass(frozen=True)
class Scope:
    """What one caller may read through the tools: the documents `filters` admit; `whole_graph` also the knowledge
    graph, which holds every tenant's chunks and entities (only admins, and the local user without keys)."""

    filters: SearchFilters = field(default_factory=SearchFilters)
    whole_graph: bool = True


class Tool(ABC):
    """A capability an agent may call. Subclasses set `name`, `description` and `Args`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]

    def available(self) -> bool:
        """Whether the agent may be offered this tool now (a search tool without documents is not)."""
        return True

    def scoped(self, scope: Scope) -> "Tool | None":
        """This tool as one caller may use it: a copy that reads only what `scope` allows, or None when the tool
        cannot be limited to it (it is not offered then). Tools that read no documents are themselves."""
        return self

    @classmethod
    def args_schema(cls) -> dict[str, Any]:
        """JSON schema of the arguments, as guided decoding and OpenAI tool specs need it."""
        return cls.Args.model_json_schema()

    async def call(self, arguments: dict[str, Any]) -> str | SourcedResult:
        """Validate raw arguments and run.

        Raises:
            ToolError: invalid arguments or a failure the model should hear about.
        """
        try:
            args = self.Args.model_validate(arguments)
        except ValidationError as e:
            raise ToolError(f"invalid arguments for {self.name}: {e.errors(include_url=False)}") from e
        return await self.run(args)

    @abstractmethod
    async def run(self, args: Any) -> str | SourcedResult:
        """Do the work; return the observation text, or passages to cite."""
