"""OpenAI function calling on the expert models, by JSON-schema guided decoding (so every model, the packaged 135M
one included, emits calls that parse and match the tools' parameter schemas).

The model answers `{"tool_calls": [{"name": …, "arguments": {…}}, …]}` under a schema built from the client's
tools, like vLLM's own handling of `tool_choice` "required" and named tools (`_get_json_schema_from_tool`):
`required` asks for at least one call, a named tool for exactly that one, `auto` allows none, in which case the
expert then answers in free text. `parallel_tool_calls: false` allows at most one call.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from chimera.errors import ChimeraError
from chimera.messages import ChatMessage

MAX_PARALLEL_CALLS = 8

ToolMode: TypeAlias = Literal["auto", "required", "named"]


class UnsupportedToolSchemaError(ChimeraError):
    """The engine cannot guide decoding by a schema made of the tools' parameters (a feature its grammar lacks)."""


@dataclass(frozen=True)
class FunctionTool:
    """A tool the client offers: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # None: no arguments

    def arguments_schema(self) -> dict[str, Any]:
        return self.parameters or {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class FunctionCall:
    """A call the model made, for the client to run: `arguments` is a JSON object's text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's `tool_calls[]` entry."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolOffer:
    """The tools of one request and how the model may use them (`named`: only `tools[0]`, which is the one named)."""

    tools: tuple[FunctionTool, ...]
    mode: ToolMode = "auto"
    parallel: bool = True

    def schema(self) -> dict[str, Any]:
        """The JSON schema the model's tool decision is decoded under."""
        offered = self.tools[:1] if self.mode == "named" else self.tools
        calls = [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.arguments_schema()},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in offered
        ]
        most = MAX_PARALLEL_CALLS if self.parallel and self.mode != "named" else 1
        items: dict[str, Any] = {
            "type": "array",
            "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
            "minItems": 0 if self.mode == "auto" else 1,
            "maxItems": most,
        }
        return {
            "type": "object",
            "properties": {"tool_calls": items},
            "required": ["tool_calls"],
            "additionalProperties": False,
        }

    def instructions(self) -> ChatMessage:
        """A system note listing the tools and the reply format (merged into the expert's system prompt)."""
        listed = "\n".join(
            f"- {t.name}: {t.description or 'no description'} Arguments (JSON schema): "
            f"{json.dumps(t.arguments_schema(), separators=(',', ':'))}"
            for t in self.tools
        )
        when = {
            "auto": "If the request needs a tool, call it (more only if it needs more); if not, or a tool result "
            'already answers, reply {"tool_calls": []}.',
            "required": "Call the tool the request needs (more only if it needs more).",
            "named": f"Call {self.tools[0].name}.",
        }[self.mode]
        return ChatMessage(
            role="system",
            content=f"You can call these tools:\n{listed}\n"
            f'Reply with JSON only: {{"tool_calls": [{{"name": "<tool>", "arguments": {{...}}}}]}}. {when}',
        )


def parse_calls(text: str) -> tuple[FunctionCall, ...]:
    """The calls in a decision decoded under `ToolOffer.schema()`, each with a new id.

    A decision cut short by `max_tokens` (a small model may go on adding calls) keeps the calls it completed:
    guided decoding held each of them to its schema.

    Raises:
        ValueError: not even one call is complete, nor is the decision (`{"tool_calls": []}`).
    """
    try:
        made = json.loads(text)["tool_calls"]
    except (ValueError, KeyError, TypeError):
        made = _complete_calls(text)
        if not made:
            raise ValueError(f"the tool decision is not complete JSON: {text[:200]!r}") from None
    return tuple(
        FunctionCall(f"call_{uuid.uuid4().hex[:24]}", c["name"], json.dumps(c["arguments"], ensure_ascii=False))
        for c in made
    )


def _complete_calls(text: str) -> list[dict[str, Any]]:
    """The whole call objects at the start of a cut decision's `tool_calls` array."""
    decoder, calls = json.JSONDecoder(), []
    at = text.find("[", text.find('"tool_calls"') + 1)
    while at >= 0:
        at += 1
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        try:
            call, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        calls.append(call)
    return calls


def calls_text(calls: tuple[FunctionCall, ...] | list[FunctionCall]) -> str:
    """An assistant turn that made `calls`, as the model reads it in later turns (the decision's own shape)."""
    made = [{"name": c.name, "arguments": json.loads(c.arguments or "{}")} for c in calls]
    return json.dumps({"tool_calls": made}, ensure_ascii=False)


def result_text(name: str | None, content: str) -> str:
    """A `role: tool` reply as the model reads it."""
    return f"Result of {name}: {content}" if name else f"Tool result: {content}"
