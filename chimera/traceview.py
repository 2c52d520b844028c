"""Span records of one trace (from the span store) as an indented tree: `chimera traces`, the demo and the tests."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpanNode:
    record: dict[str, Any]
    children: list["SpanNode"] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.record["end_ns"] - self.record["start_ns"]) / 1e6


def build_tree(spans: list[dict[str, Any]]) -> list[SpanNode]:
    """Roots of one trace (spans whose parent is absent from it: the root, and children whose parent has not
    arrived), children ordered by start time."""
    nodes = {s["span_id"]: SpanNode(s) for s in spans}
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.record["start_ns"]):
        parent = nodes.get(node.record["parent_id"] or "")
        (parent.children if parent else roots).append(node)
    return roots


def render(trace_id: str, spans: list[dict[str, Any]]) -> Iterator[str]:
    """The lines of one trace's tree: name, duration, process, status and a few telling attributes per span."""
    yield f"trace {trace_id}"
    for root in build_tree(spans):
        yield from _render_node(root, 1)


_SHOWN = ("chimera.route.expert", "chimera.route.confidence", "chimera.tool.observation",
          "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "chimera.agent.decision")  # fmt: skip


def _render_node(node: SpanNode, depth: int) -> Iterator[str]:
    r = node.record
    role = r.get("resource", {}).get("chimera.process.role", "?")
    pid = r.get("resource", {}).get("process.pid", "?")
    attrs = " ".join(f"{k.split('.')[-1]}={r['attributes'][k]}" for k in _SHOWN if k in r["attributes"])
    status = "" if r["status"] != "ERROR" else " ERROR"
    yield f"{'  ' * depth}{r['name']}  {node.duration_ms:.1f} ms  [{role} pid {pid}]{status} {attrs}".rstrip()
    for child in node.children:
        yield from _render_node(child, depth + 1)
