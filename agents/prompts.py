"""Prompts and the guided-decoding schema of the ReAct agent's tool choice."""

import json
from typing import Any

from chimera.agents.state import ToolCall
from chimera.messages import ChatMessage
from chimera.tools.base import Tool
from chimera.tools.search.types import Citation

NO_TOOL = "none"


def decision_schema(tools: dict[str, Tool]) -> dict[str, Any]:
    """JSON schema of one decision: a call of one tool with its arguments, or `{"tool": "none"}`."""
    calls = [
        {
            "type": "object",
            "properties": {"tool": {"const": name}, "arguments": tool.args_schema()},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for name, tool in tools.items()
    ]
    done = {
        "type": "object",
        "properties": {"tool": {"const": NO_TOOL}},
        "required": ["tool"],
        "additionalProperties": False,
    }
    return {"anyOf": [*calls, done]}


def decision_instructions(tools: dict[str, Tool]) -> ChatMessage:
    lines = [f"- {name}: {tool.description}" for name, tool in tools.items()]
    example = next(iter(tools), "calculator")
    return ChatMessage(
        role="system",
        content=(
            "You decide whether a tool is needed. Reply with JSON only.\n"
            f"Tools:\n{chr(10).join(lines)}\n"
            "Use the calculator for every calculation, even an easy one.\n"
            f'To call a tool: {{"tool": "{example}", "arguments": {{...}}}}\n'
            f'When no tool is needed, or a tool result already answers the question: {{"tool": "{NO_TOOL}"}}'
        ),
    )


def call_message(call: ToolCall) -> ChatMessage:
    """The assistant turn that made a call, as the model will see it in later steps."""
    return ChatMessage(role="assistant", content=json.dumps({"tool": call.tool, "arguments": call.arguments}))


def observation_message(call: ToolCall) -> ChatMessage:
    return ChatMessage(role="user", content=f"Result of {call.tool}: {call.observation}")


def passages_text(citations: tuple[Citation, ...]) -> str:
    """Numbered passages as the model reads them: `[n] (source, page) text`."""
    return "\n".join(f"{c.label}: {c.text}" for c in citations)


def answer_context(calls: list[ToolCall]) -> ChatMessage | None:
    """A last user turn that hands the tool results to the answering step.

    A user turn right before the answer, not a system note: small models weigh the newest turn most.
    """
    done = [c for c in calls if c.error is None]  # failed calls informed `decide`; here they only mislead
    if not done:
        return None
    parts = []
    passages = [c for c in done if c.citations]
    if passages:
        parts.append("Passages:\n" + "\n".join(c.result or "" for c in passages))
    results: dict[tuple[str, str | None], ToolCall] = {}  # a result several calls brought back is one fact
    for c in done:
        if not c.citations:
            results.setdefault((c.tool, c.result), c)
    if results:
        facts = "; ".join(f"{_call_text(c)} = {c.result}" for c in results.values())
        # Phrasing chosen by probing SmolLM2-135M: a list headed "Exact tool results:" was echoed back verbatim.
        parts.append(f"{'Tool result' if len(results) == 1 else 'Tool results'}: {facts}.")
    ask = (
        "Answer my question briefly from these passages, with the passage number like [1]."
        if passages
        else ("Now answer my question.")
    )
    return ChatMessage(role="user", content=("\n" if passages else " ").join([*parts, ask]))


def _call_text(call: ToolCall) -> str:
    """`17 * 23` for a one-argument call (the calculator), `tool({...})` otherwise."""
    if len(call.arguments) == 1:
        return str(next(iter(call.arguments.values())))
    return f"{call.tool}({json.dumps(call.arguments)})"
