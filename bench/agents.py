"""Agent eval: pass rate, tool-call validity and steps of the agent graphs on a fixed task set.

Starts `chimera serve` on a copy of the config whose data dir is a fresh temp dir, ingests the sample documents
into it first (`chimera ingest`), then asks every task's question of every graph (`model=<graph>`, one request at
a time, not streamed) and checks the reply:

- `arithmetic`: the reply contains the number `answer` (1,234 / 1234.0 / 1234 all count).
- `documents`: the reply contains one of `answer_any` (case-insensitive, not inside a longer word or number);
  the facts exist only in `bench/data/agent_docs/`.
- `code`: the reply's first fenced block tagged python (else its first untagged one; a block cut off by the
  token cap runs to the end of the reply), followed by the task's `check` asserts, exits 0 in the `run_python`
  sandbox.

The server's "Sources:" footer is cut off before checking: its file names and headings are not the model's words.
Per run it reads the trace's spans (the span store `<data_dir>/traces.sqlite`, by the `x-chimera-trace-id` header):
steps = `agent.decide` spans (all specialists' for the team); tool calls attempted = decisions naming a tool
that ran (a `tool.<name>` span) + decisions whose text is not JSON; valid = those that ran without an error
other than the tool being unavailable or out of time (an unknown tool, invalid arguments, an expression the
calculator cannot read, a refused query are invalid). Decisions that repeat an earlier call (the graph answers
instead) and calls cut by the step or token budget are counted apart, not as attempts.

    python bench/agents.py --config configs/local.yaml [--tasks bench/data/agent_tasks.jsonl]
        [--docs bench/data/agent_docs] [--graphs chimera-react,chimera-team] [--limit N]

`--limit N` takes the first N tasks of each kind. Only the config changes for a GPU run (the copy also pins the
index, embedded graph and span store to the temp dir). Prints a table, writes bench/results/agents.json.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from chimera.config import load_config
from chimera.server_process import ServerProcess, free_port, ingest, isolated_config
from chimera.spans.factory import span_store_path
from chimera.spans.sqlite import SqliteSpanStore
from chimera.spans.store import SpanStore, TraceNotFoundError
from chimera.tools.run_python import RunPython

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
KINDS = ("arithmetic", "documents", "code")
SOURCES_FOOTER = "\n\nSources:\n"
NO_TOOL = "none"
# Tool errors that say nothing about the call the model wrote: the tool could not run here, or ran out of time.
NOT_CALL_ERRORS = ("run_python is unavailable", "run_python could not", "knowledge graph is unavailable",
                   "did not stop within", "ran past")  # fmt: skip
_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)

Kind = Literal["arithmetic", "documents", "code"]


@dataclass(frozen=True)
class Task:
    id: str
    kind: Kind
    question: str
    answer: float | None = None
    answer_any: tuple[str, ...] = ()
    check: str = ""


@dataclass
class CallStats:
    """What the decisions of one run did, read from its spans."""

    steps: int = 0  # agent.decide spans
    attempted: int = 0
    valid: int = 0
    unparsed: int = 0  # decision text not JSON
    unknown_tool: int = 0
    call_errors: int = 0  # the tool refused the arguments or failed on them
    repeated: int = 0  # a call identical to an earlier one: the graph answers instead
    dropped: int = 0  # a call past the step or token budget: never run
    calls: list[str] = field(default_factory=list)  # `tool(args) -> observation`, cut short


@dataclass
class TaskResult:
    graph: str
    task_id: str
    kind: Kind
    passed: bool
    latency_s: float
    stats: CallStats
    agents: list[str]  # the routed expert (react) or the planned specialists (team)
    reply: str
    detail: str = ""


def load_tasks(path: Path, docs: Path) -> list[Task]:
    """Tasks from JSONL, checked: known kind, a checker, document answers absent from the question but present in
    the docs (text files), unique ids."""
    corpus = " ".join(p.read_text(errors="replace") for p in docs.rglob("*") if p.suffix in (".md", ".txt"))
    tasks: list[Task] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        task = Task(raw["id"], raw["kind"], raw["question"], raw.get("answer"), tuple(raw.get("answer_any", ())),
                    raw.get("check", ""))  # fmt: skip
        problem = _problem(task, corpus, docs)
        if problem:
            raise SystemExit(f"{path}:{n} ({task.id}): {problem}")
        tasks.append(task)
    if len({t.id for t in tasks}) != len(tasks):
        raise SystemExit(f"{path}: task ids are not unique")
    return tasks


def _problem(task: Task, corpus: str, docs: Path) -> str | None:
    """What is wrong with a task, if anything."""
    if task.kind not in KINDS:
        return f"unknown kind {task.kind!r}"
    if task.kind == "arithmetic" and not isinstance(task.answer, int | float):
        return "no numeric `answer`"
    if task.kind == "code" and not task.check:
        return "no `check`"
    if task.kind == "documents":
        if not task.answer_any:
            return "no `answer_any`"
        if any(_mentions(task.question, a) for a in task.answer_any):
            return "an answer appears in the question"
        if corpus and not any(_mentions(corpus, a) for a in task.answer_any):
            return f"no answer appears in the text files of {docs}"
    return None


def _mentions(text: str, phrase: str) -> bool:
    """`phrase` in `text`, case-insensitive, not inside a longer word or number."""
    return re.search(rf"(?<![\w.]){re.escape(phrase)}(?!\w|[.,]\d)", text, re.IGNORECASE) is not None


def numbers_in(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def code_block(reply: str) -> str | None:
    """The first python-tagged fenced block, else the first untagged one."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(reply)]
    tagged = [b for tag, b in blocks if tag in ("python", "py", "python3")]
    untagged = [b for tag, b in blocks if not tag]
    return (tagged or untagged or [None])[0]


async def check(task: Task, reply: str, sandbox: RunPython) -> tuple[bool, str]:
    """Whether the reply solves the task, and why not."""
    text = reply.split(SOURCES_FOOTER, 1)[0]
    if task.kind == "arithmetic":
        assert task.answer is not None
        found = numbers_in(text)
        ok = any(math.isclose(x, task.answer, rel_tol=1e-9, abs_tol=1e-6) for x in found)
        return ok, "" if ok else f"numbers in reply: {found[:8]}"
    if task.kind == "documents":
        ok = any(_mentions(text, a) for a in task.answer_any)
        return ok, "" if ok else "no expected phrase"
    code = code_block(text)
    if code is None:
        return False, "no code block"
    observation = str(await sandbox.call({"code": f"{code}\n\n{task.check}\n"}))
    status, _, output = observation.partition("\n")
    return status == "exit code 0", "" if status == "exit code 0" else f"{status}: {output.strip()[-300:]}"


def call_stats(spans: list[dict[str, Any]]) -> CallStats:
    """Classify the run's decisions; a decision's call ran if the next decide-or-tool span under the same parent
    is that tool's span. A call that did not run was a repeat (`stop_reason` "repeated_call"; servers without the
    attribute record a repeat as decision "none" with a call in its text) or was cut by the step or token budget."""
    stats = CallStats()
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=lambda s: s["start_ns"]):
        if s["name"] == "agent.decide" or s["name"].startswith("tool."):
            by_parent.setdefault(s["parent_id"] or "", []).append(s)
    for group in by_parent.values():
        for i, span in enumerate(group):
            if span["name"] != "agent.decide":
                continue
            stats.steps += 1
            attrs = span["attributes"]
            decision, text = attrs.get("chimera.agent.decision", NO_TOOL), attrs.get("chimera.agent.decision_text", "")
            if decision == NO_TOOL:
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    stats.attempted += 1
                    stats.unparsed += 1
                    stats.calls.append(f"unparsed: {text[:120]}")
                    continue
                if isinstance(parsed, dict) and parsed.get("tool", NO_TOOL) != NO_TOOL:
                    stats.repeated += 1
                continue
            ran = group[i + 1] if i + 1 < len(group) and group[i + 1]["name"] == f"tool.{decision}" else None
            if ran is None:
                if attrs.get("chimera.agent.stop_reason") == "repeated_call":
                    stats.repeated += 1
                else:
                    stats.dropped += 1
                continue
            stats.attempted += 1
            observation = str(ran["attributes"].get("chimera.tool.observation", ""))
            arguments = ran["attributes"].get("chimera.tool.arguments", "")
            stats.calls.append(f"{decision}({arguments[:100]}) -> {observation[:120]}")
            if ran["status"] != "ERROR" or any(e in observation for e in NOT_CALL_ERRORS):
                stats.valid += 1
            elif "unknown tool" in observation:
                stats.unknown_tool += 1
            else:
                stats.call_errors += 1
    return stats


async def run_spans(traces: SpanStore, trace_id: str, timeout_s: float = 15) -> list[dict[str, Any]]:
    """The trace's spans once its `agent.graph` span has been written (it ends before the reply is sent)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            spans = traces.trace(trace_id)
        except TraceNotFoundError:
            spans = []
        if any(s["name"] == "agent.graph" for s in spans) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.2)


async def run_task(
    http: httpx.AsyncClient, graph: str, task: Task, traces: SpanStore, sandbox: RunPython, max_tokens: int
) -> TaskResult:
    body = {"model": graph, "messages": [{"role": "user", "content": task.question}], "max_tokens": max_tokens}
    began = time.perf_counter()
    response = await http.post("/v1/chat/completions", json=body)
    latency = time.perf_counter() - began
    if response.status_code != 200:
        return TaskResult(graph, task.id, task.kind, False, latency, CallStats(), [], "",
                          f"HTTP {response.status_code}: {response.text[:300]}")  # fmt: skip
    reply = response.json()["choices"][0]["message"]["content"] or ""
    spans = await run_spans(traces, response.headers["x-chimera-trace-id"])
    plan = next((s["attributes"]["chimera.team.plan"] for s in spans if s["name"] == "team.plan"), None)
    agents = [t["agent"] for t in json.loads(plan)] if plan else [response.headers.get("x-chimera-expert", "?")]
    passed, detail = await check(task, reply, sandbox)
    return TaskResult(graph, task.id, task.kind, passed, latency, call_stats(spans), agents, reply, detail)


def summarize(results: list[TaskResult]) -> dict[str, Any]:
    """Per-graph numbers: pass rates, tool-call validity, steps, latency."""
    stats = [r.stats for r in results]
    attempted = sum(s.attempted for s in stats)
    by_kind = {k: [r for r in results if r.kind == k] for k in KINDS}
    return {
        "tasks": len(results),
        "pass_rate": sum(r.passed for r in results) / len(results),
        "pass_rate_by_kind": {k: sum(r.passed for r in rs) / len(rs) for k, rs in by_kind.items() if rs},
        "passed_by_kind": {k: f"{sum(r.passed for r in rs)}/{len(rs)}" for k, rs in by_kind.items() if rs},
        "tool_calls_attempted": attempted,
        "tool_call_validity": sum(s.valid for s in stats) / attempted if attempted else None,
        "tool_call_failures": {
            "unparsed": sum(s.unparsed for s in stats),
            "unknown_tool": sum(s.unknown_tool for s in stats),
            "call_errors": sum(s.call_errors for s in stats),
        },
        "repeated_calls": sum(s.repeated for s in stats),
        "dropped_at_budget": sum(s.dropped for s in stats),
        "tasks_with_tool_calls": sum(s.attempted > 0 for s in stats),
        "mean_steps": statistics.mean(s.steps for s in stats),
        "mean_latency_s": statistics.mean(r.latency_s for r in results),
        "p50_latency_s": statistics.median(r.latency_s for r in results),
        "agents_by_kind": {k: dict(Counter(a for r in rs for a in r.agents)) for k, rs in by_kind.items() if rs},
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = f"{'graph':<15}{'tasks':>6}{'pass':>8}{'arith':>8}{'docs':>8}{'code':>8}"
    head += f"{'tool-valid':>12}{'calls':>7}{'steps':>7}{'latency':>9}"
    lines = [head, "-" * len(head)]
    for graph, s in summary.items():
        kinds = "".join(f"{s['passed_by_kind'].get(k, '-'):>8}" for k in KINDS)
        valid = "-" if s["tool_call_validity"] is None else f"{100 * s['tool_call_validity']:.0f}%"
        lines.append(
            f"{graph:<15}{s['tasks']:>6}{100 * s['pass_rate']:>7.1f}%{kinds}{valid:>12}"
            f"{s['tool_calls_attempted']:>7}{s['mean_steps']:>7.2f}{s['mean_latency_s']:>8.1f}s"
        )
    return "\n".join(lines)


async def run_all(
    url: str, graphs: list[str], tasks: list[Task], traces: SpanStore, max_tokens: int
) -> list[TaskResult]:
    sandbox = RunPython(wall_seconds=10)
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        warm = {"model": graphs[0], "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
        (await http.post("/v1/chat/completions", json=warm)).raise_for_status()  # first-request costs, unmeasured
        for graph in graphs:
            for task in tasks:
                result = await run_task(http, graph, task, traces, sandbox, max_tokens)
                mark = "pass" if result.passed else "FAIL"
                print(f"{graph:<14} {task.id:<10} {mark} {result.latency_s:5.1f}s steps={result.stats.steps} "
                      f"calls={result.stats.attempted} {result.detail[:90]}", flush=True)  # fmt: skip
                results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    parser.add_argument("--tasks", type=Path, default=BENCH / "data" / "agent_tasks.jsonl")
    parser.add_argument("--docs", type=Path, default=BENCH / "data" / "agent_docs")
    parser.add_argument("--graphs", default="chimera-react,chimera-team", help="comma-separated `model` values")
    parser.add_argument("--limit", type=int, help="at most N tasks of each kind")
    parser.add_argument("--max-tokens", type=int, default=200, help="the requests' max_tokens (the answer's cap)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir (traces, server log)")
    args = parser.parse_args()

    tasks = load_tasks(args.tasks, args.docs)
    if args.limit is not None:
        tasks = [t for k in KINDS for t in [t for t in tasks if t.kind == k][: args.limit]]
    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    config = load_config(args.config)
    data_dir = Path(tempfile.mkdtemp(prefix="chimera-agents-bench-"))
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "", "NEO4J_URI": ""}  # spans to the store, graph embedded
    began = time.monotonic()
    try:
        config_path = isolated_config(args.config, data_dir)
        print(f"ingest {args.docs}: {ingest(config_path, args.docs, env)}", flush=True)
        with ServerProcess(config_path, free_port(), data_dir / "server.log", env=env) as server:
            print(f"server up in {time.monotonic() - began:.0f}s; {len(tasks)} tasks x {graphs}", flush=True)
            traces = SqliteSpanStore(span_store_path(data_dir))
            try:
                results = asyncio.run(run_all(server.url, graphs, tasks, traces, args.max_tokens))
            finally:
                traces.close()
    finally:
        if args.keep_data:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    wall_s = time.monotonic() - began

    summary = {g: summarize([r for r in results if r.graph == g]) for g in graphs}
    report = {
        "benchmark": "agents",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "config": str(args.config),
        "models": {
            e: config.engines[x.engine].served_name or config.engines[x.engine].model for e, x in config.experts.items()
        },
        "tasks_file": str(args.tasks),
        "tasks": len(tasks),
        "tasks_by_kind": dict(Counter(t.kind for t in tasks)),
        "max_tokens": args.max_tokens,
        "wall_s": wall_s,
        "summary": summary,
        "results": [{**asdict(r), "reply": r.reply[:1500]} for r in results],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "agents.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{table(summary)}\n\nwall {wall_s:.0f}s; written to {out}")


if __name__ == "__main__":  # vLLM spawns processes: keep the entry point guarded
    main()
