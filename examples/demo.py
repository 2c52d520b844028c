"""`make demo`: ingest the project's docs, start the embedded stack, ask one question per expert, one calculator
question and one question about the docs, shut down.

The docs go into an index of the demo's own (`<data_dir>/demo/index`, through a copy of the config that points
there), removed at the end: the user's index, and the answers grounded in it, never see Chimera's own docs.

Each answer is printed with the expert that gave it and its trace id; the documents question with its
citations; the calculator question's trace is printed as a tree, so you can see it cross from the API process
into the expert's Ray actor and through the tool.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from chimera.client import Client
from chimera.config import ChimeraConfig, load_config
from chimera.server_process import ServerProcess, free_port
from chimera.spans.factory import open_span_store, span_store_path
from chimera.spans.store import TraceNotFoundError
from chimera.tools.search.factory import build_ingestor, open_index
from chimera.tools.search.index import read_table
from chimera.traceview import render

QUESTIONS = [  # (model, question): `auto` lets the router pick the expert; `chimera` runs the agent with tools
    ("auto", "Write a Python function that checks whether a number is prime."),
    ("auto", "Solve for x: 3x + 7 = 22. Show the steps."),
    ("auto", "Summarize in one sentence: Chimera routes each request to the expert model best suited to it."),
    ("auto", "What is the capital of France?"),
    ("chimera", "Calculate 17 * 23."),
    ("chimera", "According to the docs, which database keeps the knowledge graph by default?"),
]
DOCS = [Path("README.md"), Path("docs")]  # what the demo ingests (as `chimera ingest README.md docs` would)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    args = parser.parse_args()
    # A Neo4j graph would be shared with the user's index (and loading another index prunes its chunks as orphans):
    # the demo, and the server it starts, keep their graph in the demo's embedded store.
    os.environ.pop("NEO4J_URI", None)
    user_config = load_config(args.config)
    config_path = demo_config(Path(args.config), user_config.data_dir / "demo")
    config = load_config(config_path)
    shutil.rmtree(config.index_dir, ignore_errors=True)  # what a run that was killed left
    try:
        return run(config, config_path)
    finally:
        shutil.rmtree(config.index_dir, ignore_errors=True)
        print(f"Removed the demo's index ({config.index_dir}); your index ({user_config.index_dir}) is untouched.")
        earlier_demo_docs(user_config)


def demo_config(config_path: Path, folder: Path) -> Path:
    """A copy of the config whose index is the demo's own, under `folder`; models, Redis and traces are shared."""
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    raw["search"] = {**(raw.get("search") or {}), "index_dir": str(folder / "index"), "graph_store": "embedded"}
    raw["search"].pop("neo4j_uri", None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def run(config: ChimeraConfig, config_path: Path) -> int:
    """Ingest the docs into the demo's index, start the server on it and ask the questions."""
    log = Path(config.data_dir) / "demo-server.log"
    with open_index(config.search, config.index_dir) as index:
        report = build_ingestor(config.search, index, config.index_dir).ingest(DOCS)
    print(f"Ingested {', '.join(map(str, DOCS))} into the demo's index: {report.summary()}", flush=True)
    print(f"Starting Chimera ({config_path}); server log: {log}", flush=True)
    started = time.monotonic()
    with ServerProcess(config_path, free_port(), log) as server:
        print(f"Ready in {time.monotonic() - started:.0f}s at {server.url}\n", flush=True)
        client = Client(server.url)
        calculator_trace = ""
        for model, question in QUESTIONS:
            began = time.monotonic()
            reply = client.chat(question, model=model, max_tokens=160)
            print(f"Q [{model}] {question}")
            print(f"A {reply.text.strip()}")
            tokens, seconds = reply.usage["completion_tokens"], time.monotonic() - began
            print(f"  expert={reply.expert} confidence={reply.route_confidence:.2f} trace={reply.trace_id}", end=" ")
            print(f"tokens={tokens} {seconds:.1f}s", flush=True)
            for c in reply.citations:
                print(f"  [{c['n']}] {c['source']} > {' > '.join(c['heading_path'])}")
            print(flush=True)
            if question.startswith("Calculate"):
                calculator_trace = reply.trace_id
        time.sleep(0.5)  # the expert actor writes its spans as they end
        spans = stored_spans(config, calculator_trace)
        if spans:
            print("Trace of the calculator question:")
            print("\n".join(render(calculator_trace, spans)))
        print("\nA long task through the SDK (POST /v1/tasks; a task worker actor runs it):", flush=True)
        task = client.tasks.submit("agent", {"prompt": "What is 12 * 34?", "max_tokens": 96})
        seen = [event.type for event in task.events() if event.type != "delta"]
        print(f"  task {task.id}: {' -> '.join(seen)}")
        print(f"  result: {task.result(timeout=600)['text'].strip()}", flush=True)
        print("\nShutting down.", flush=True)
    print(f"Traces are kept in {span_store_path(config.data_dir.resolve())}: `make serve`, then open")
    print(f"http://{config.server.host}:{config.server.port}/ui to browse them, or run `chimera traces`.")
    return 0


def earlier_demo_docs(config: ChimeraConfig) -> None:
    """Say how to remove the docs that demos before this one ingested into the user's own index."""
    ours = [str(p.resolve()) for p in DOCS]
    found = [d for d in read_table(config.index_dir).documents() if d.source.startswith(tuple(ours))]
    if found:
        print(f"{len(found)} of Chimera's own docs are in your index from an earlier demo; to remove them:")
        print(f"  chimera ingest --delete --tenant {found[0].tenant} {' '.join(ours)}")


def stored_spans(config: ChimeraConfig, trace_id: str) -> list[dict[str, object]]:
    """The trace's spans in the span store (none when tracing goes elsewhere)."""
    store = open_span_store(config.tracing, span_store_path(config.data_dir.resolve()))
    try:
        return store.trace(trace_id) if trace_id else []
    except TraceNotFoundError:
        return []
    finally:
        store.close()


if __name__ == "__main__":  # vLLM and Ray spawn processes: keep the entry point guarded
    sys.exit(main())
