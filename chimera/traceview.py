"""Reading the JSONL trace file: group spans into traces and print each as an indented tree."""

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SpanNode:
    record: dict[str, Any]
    children: list["SpanNode"] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.record["end_ns"] - self.record["start_ns"]) / 1e6


def read_spans(path: Path) -> list[dict[str, Any]]:
    """All spans in the file, skipping a torn last line (a process may be writing)."""
    if not path.exists():
        return []
    spans = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            spans.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return spans


def traces(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Spans by trace id, traces ordered by their earliest start."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        by_trace[s["trace_id"]].append(s)
    return dict(sorted(by_trace.items(), key=lambda kv: min(s["start_ns"] for s in kv[1])))


def build_tree(spans: list[dict[str, Any]]) -> list[SpanNode]:
    """Roots of one trace (spans whose parent is absent from it), children ordered by start time."""
    nodes = {s["span_id"]: SpanNode(s) for s in spans}
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.record["start_ns"]):
        parent = nodes.get(node.record["parent_id"] or "")
        (parent.children if parent else roots).append(node)
    return roots


def render(trace_id: str, spans: list[dict[str, Any]]) -> Iterator[str]:
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
