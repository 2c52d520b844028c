"""Tasks on the real stack: `chimera serve` with its task worker actors on local Ray and SmolLM2 on vLLM-CPU. A
worker actor SIGKILLed in the middle of an agent task is restarted by Ray; the task is reclaimed after the lease
and finishes as attempt 2, with one terminal event and one trace from the submit to the worker's spans."""

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from chimera.client import Client
from tests.integration.conftest import TestServer

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "cancelled"}


def _events(server: TestServer, task_id: str, after: str | None = None) -> Iterator[dict[str, object]]:
    """The task's events through the SDK, which reconnects from its last event id by itself."""
    with Client(server.url) as client:
        for event in client.tasks.get(task_id).events(after=after):
            yield {"id": event.id, "type": event.type, "attempt": event.attempt, "data": event.data}


def test_a_killed_worker_actor_is_restarted_and_its_task_finishes_as_attempt_two(server: TestServer) -> None:
    prompt = {"prompt": "Write three sentences about the sea.", "max_tokens": 96}
    body = {"kind": "agent", "model": "chimera-chat", "input": prompt}
    submitted = httpx.post(f"{server.url}/v1/tasks", json=body, timeout=30)
    assert submitted.status_code == 202, submitted.text
    task_id, trace_id = submitted.json()["id"], submitted.headers["x-chimera-trace-id"]

    seen: list[dict[str, object]] = []
    killed = None
    for event in _events(server, task_id):
        seen.append(event)
        if event["type"] == "started":
            pid = int(event["data"]["pid"])  # type: ignore[index]
        if killed is None and event["type"] == "delta":  # in the middle of the answer
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
        if event["type"] in TERMINAL:
            break
    assert killed is not None, [e["type"] for e in seen]
    types = [str(e["type"]) for e in seen]
    assert types.count("started") == 1 and "retry" in types and types[-1] == "succeeded", types
    assert [t for t in types if t in TERMINAL] == ["succeeded"]
    retry = next(e for e in seen if e["type"] == "retry")
    assert retry["attempt"] == 2 and int(retry["data"]["pid"]) != pid  # type: ignore[index]  # Ray's new process
    task = httpx.get(f"{server.url}/v1/tasks/{task_id}", timeout=10).json()
    assert task["status"] == "succeeded" and task["attempt"] == 2 and task["result"]["text"]
    # a reader that lost its connection right after the kill resumes from its cursor: no gap, no duplicate
    cut = next(i for i, e in enumerate(seen) if e["type"] == "delta")
    assert seen[: cut + 1] + list(_events(server, task_id, after=str(seen[cut]["id"]))) == seen

    deadline = time.monotonic() + 20
    while True:  # spans are written as they end; the second attempt's end is last
        spans = server.trace_spans(trace_id)
        attempts = [s for s in spans if s["name"] == "task.agent"]
        if len(attempts) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = {s["name"] for s in spans}
    assert {"POST /v1/tasks", "task.agent", "expert.generate", "engine.generate"} <= names, names
    assert [s["attributes"]["chimera.task.attempt"] for s in attempts] == [2]  # attempt 1 died with its process
