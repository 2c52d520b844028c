"""What each task kind takes as `input`, checked at submit time (400 for anything wrong, before it is queued)."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chimera.messages import ChatMessage
from chimera.tasks.model import InvalidTaskError, TaskKind

_NAME = r"^[A-Za-z0-9._-]{1,64}$"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentInput(_Input):
    """An agent run (or one expert's answer, by `model`): a prompt or a conversation."""

    prompt: str | None = Field(None, min_length=1, description="One user message.")
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=256, description="Or a conversation.")
    interrupt_before: tuple[str, ...] | None = Field(None, description="Graph nodes to pause before, for approval.")
    max_tokens: int | None = Field(None, gt=0, description="Cap of the answer's tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _one_of(self) -> "AgentInput":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` and `messages`")
        return self

    @property
    def conversation(self) -> list[ChatMessage]:
        return self.messages or [ChatMessage(role="user", content=self.prompt or "")]


class IngestInput(_Input):
    """Files and folders on the workers' file system (a shared volume in a cluster), into a tenant's documents."""

    paths: list[str] = Field(min_length=1, max_length=1000, description="Files or folders, recursively.")
    tenant: Annotated[str, Field(pattern=_NAME)] | None = Field(None, description="Default: the caller's tenant.")
    acl: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list, max_length=64)
    delete: bool = Field(False, description="Remove these paths' chunks instead of indexing them.")


class EvalInput(_Input):
    """One of the evaluation CLIs' runs, on a data file (or BEIR folder) the workers can read."""

    eval: Literal["router", "guard", "retrieval"]
    data: str = Field(min_length=1, description="JSONL of {text, label[, source]}, or a BEIR folder (retrieval).")
    max_queries: int | None = Field(None, gt=0, description="Retrieval: score only the first N judged queries.")


INPUTS: dict[TaskKind, type[_Input]] = {"agent": AgentInput, "ingest": IngestInput, "eval": EvalInput}


def parse_input(kind: TaskKind, raw: object) -> _Input:
    """The typed input of a `kind` task.

    Raises:
        InvalidTaskError: the input does not fit (the message names the field), or names files that do not exist.
    """
    try:
        parsed = INPUTS[kind].model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise InvalidTaskError(f"input.{where}: {first['msg']}" if first["loc"] else first["msg"], "input") from e
    missing = [p for p in _paths(parsed) if not Path(p).exists()]
    if missing:
        raise InvalidTaskError(f"no such file or folder: {', '.join(missing[:5])}", "input")
    return parsed


def _paths(parsed: _Input) -> list[str]:
    if isinstance(parsed, IngestInput) and not parsed.delete:
        return parsed.paths
    if isinstance(parsed, EvalInput):
        return [parsed.data]
    return []
