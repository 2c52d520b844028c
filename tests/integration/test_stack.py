"""The whole stack behind one server: sessions across a restart, one trace over two processes, the agent's real
tool call, concurrency, and abort when the client goes away."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from chimera.client import Client
from tests.integration.conftest import TestServer


@pytest.fixture(scope="module")
def http(server: TestServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=180)


def _chat(http: httpx.Client, model: str, text: str, session: str | None = None, **params: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **params}
    response = http.post("/v1/chat/completions", json=body, headers={"x-session-id": session} if session else {})
    assert response.status_code == 200, response.text
    return response


def _trace(server: TestServer, trace_id: str, until: str, timeout_s: float = 15) -> list[dict[str, Any]]:
    """The spans of one trace, once a span named `until` and the root have been written (workers write each span
    as it ends; the API process in batches every 100 ms, and its root span ends last)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = server.trace_spans(trace_id)
        written = any(s["name"] == until for s in spans) and any(s["parent_id"] is None for s in spans)
        if written or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def _prompt_tokens(response: httpx.Response) -> int:
    return int(response.json()["usage"]["prompt_tokens"])


def test_session_continues_across_requests_and_a_restart(http: httpx.Client, server: TestServer) -> None:
    session = f"test-{uuid.uuid4().hex[:8]}"
    question = "What did I just tell you?"
    alone = _prompt_tokens(_chat(http, "chimera-chat", question))

    first = _chat(http, "chimera-chat", "My favourite colour is teal.", session)
    assert first.headers["x-session-id"] == session
    second = _chat(http, "chimera-chat", question, session)
    # the stored turn (user + assistant) is in the prompt now
    assert _prompt_tokens(second) > alone + 5

    # a task running when the API process goes: nothing is lost, and its events resume by cursor
    with Client(server.url) as client:
        task = client.tasks.submit("agent", {"prompt": "Write five sentences about rivers.", "max_tokens": 128},
                                   model="chimera-chat")  # fmt: skip
        before = []
        for event in task.events():
            before.append(event)
            if event.type in ("delta", "succeeded", "failed"):
                break

    server.restart()  # new Ray, new engine, same redis files
    third = _chat(http, "chimera-chat", question, session)
    assert _prompt_tokens(third) > _prompt_tokens(second)

    with Client(server.url) as client:
        task = client.tasks.get(task.id)
        after = list(task.events(after=before[-1].id))
        assert task.wait(timeout=300).status == "succeeded"
        everything = list(task.events())
    assert before + after == everything
    assert [e.type for e in everything if e.terminal] == ["succeeded"]

    fresh = _chat(http, "chimera-chat", question)  # no session header: a new session each time
    assert fresh.headers["x-session-id"] != session
    assert _prompt_tokens(fresh) == alone


def test_one_request_is_one_trace_across_api_and_expert_processes(http: httpx.Client, server: TestServer) -> None:
    response = _chat(http, "chimera-chat", "Name a colour.")
    spans = _trace(server, response.headers["x-chimera-trace-id"], until="engine.generate")
    by_id = {s["span_id"]: s for s in spans}
    names = {s["name"] for s in spans}
    expected = {"POST /v1/chat/completions", "guardrails.input", "router.route", "expert.generate", "engine.generate"}
    assert expected <= names

    pids = {s["resource"]["process.pid"] for s in spans}
    assert len(pids) >= 2
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["POST /v1/chat/completions"]
    assert all(s["parent_id"] in by_id for s in spans if s["parent_id"] is not None)

    engine = next(s for s in spans if s["name"] == "engine.generate")
    expert = by_id[engine["parent_id"]]
    assert expert["name"] == "expert.generate"
    assert engine["resource"]["chimera.process.role"] == "ray-worker"
    assert engine["resource"]["process.pid"] != expert["resource"]["process.pid"]
    assert expert["attributes"]["gen_ai.request.model"] == "SmolLM2-135M-Instruct"
    assert expert["attributes"]["gen_ai.usage.output_tokens"] == response.json()["usage"]["completion_tokens"]
    assert expert["attributes"]["gen_ai.usage.input_tokens"] == response.json()["usage"]["prompt_tokens"]

    # the trace API lists it by its session, summarized: root, processes, routing, tokens (the engine's usage,
    # which repeats the expert's, counted once)
    listed = http.get("/v1/traces", params={"session": response.headers["x-session-id"]}).json()["data"]
    (summary,) = listed
    usage = response.json()["usage"]
    assert summary["trace_id"] == response.headers["x-chimera-trace-id"]
    assert summary["root_name"] == "POST /v1/chat/completions" and summary["tenant"] == "default"
    assert summary["model"] == "chimera-chat" and summary["expert"] == response.headers["x-chimera-expert"]
    assert summary["input_tokens"] == usage["prompt_tokens"] and summary["output_tokens"] == usage["completion_tokens"]
    assert len(summary["processes"]) >= 2 and summary["span_count"] == len(spans) and summary["error"] is False
    assert http.get(f"/v1/traces/{summary['trace_id']}").json()["spans"] == server.trace_spans(summary["trace_id"])


def test_agent_answers_arithmetic_through_a_real_calculator_call(http: httpx.Client, server: TestServer) -> None:
    response = _chat(http, "chimera", "Calculate 17 * 23.", max_tokens=64)
    answer = response.json()["choices"][0]["message"]["content"]
    spans = _trace(server, response.headers["x-chimera-trace-id"], until="tool.calculator")
    tools = [s for s in spans if s["name"] == "tool.calculator"]
    assert tools, f"no calculator call; spans: {sorted(s['name'] for s in spans)}"
    assert json.loads(tools[0]["attributes"]["chimera.tool.arguments"])["expression"].replace(" ", "") == "17*23"
    assert tools[0]["attributes"]["chimera.tool.observation"] == "391"
    assert "391" in answer


def test_concurrent_requests_all_complete(http: httpx.Client) -> None:
    questions = [f"What is the capital of {c}?" for c in ("France", "Italy", "Spain", "Germany")] * 2

    def ask(q: str) -> httpx.Response:
        return _chat(http, "chimera-chat", q, max_tokens=24)

    with ThreadPoolExecutor(len(questions)) as pool:
        responses = list(pool.map(ask, questions))
    trace_ids = {r.headers["x-chimera-trace-id"] for r in responses}
    assert len(trace_ids) == len(questions)
    assert "Paris" in responses[0].json()["choices"][0]["message"]["content"]
    assert "Rome" in responses[1].json()["choices"][0]["message"]["content"]
    assert all(r.json()["usage"]["completion_tokens"] > 0 for r in responses)


def test_client_disconnect_aborts_generation(http: httpx.Client, server: TestServer) -> None:
    body = {
        "model": "chimera-text",
        "messages": [{"role": "user", "content": "Write a very long essay about the history of every river on Earth."}],
        "max_tokens": 2000,
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        trace_id = response.headers["x-chimera-trace-id"]
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    # closed after a few chunks: the engine must drop the request instead of generating 2000 tokens
    spans = _trace(server, trace_id, until="engine.generate", timeout_s=30)
    engine = next(s for s in spans if s["name"] == "engine.generate")
    assert engine["attributes"]["gen_ai.response.finish_reasons"] == ["abort"]
    assert engine["attributes"]["gen_ai.usage.output_tokens"] < 500
    health = http.get("/healthz").json()
    assert health["engines"]["smollm2"]["running"] == 0


def test_team_plans_runs_specialists_and_synthesizes(http: httpx.Client, server: TestServer) -> None:
    response = _chat(http, "chimera-team", "Calculate 12 * 12, and write a Python function that adds two numbers.",
                     max_tokens=64)  # fmt: skip
    answer = response.json()["choices"][0]["message"]["content"]
    assert answer.strip()
    spans = _trace(server, response.headers["x-chimera-trace-id"], until="team.synthesize", timeout_s=30)
    names = [s["name"] for s in spans]
    assert "team.plan" in names and "team.synthesize" in names
    plan = json.loads(next(s for s in spans if s["name"] == "team.plan")["attributes"]["chimera.team.plan"])
    assert 1 <= len(plan) <= 3
    specialists = [n for n in names if n in ("team.math", "team.code", "team.research")]
    assert len(specialists) == len(plan)  # every planned sub-task ran
    graph = next(s for s in spans if s["name"] == "agent.graph")
    assert graph["attributes"]["chimera.agent.graph"] == "team"


def test_the_viewer_lists_a_request_with_spans_from_the_api_and_an_engine_replica(
    http: httpx.Client, server: TestServer
) -> None:
    """What /ui shows comes from the trace API: one chat is one listed trace whose spans come from two processes."""
    response = _chat(http, "chimera-chat", "Name a fruit.", f"viewer-{uuid.uuid4().hex[:8]}")
    trace_id, session = response.headers["x-chimera-trace-id"], response.headers["x-session-id"]
    deadline = time.monotonic() + 15
    while True:  # the replica's span is written when it ends, maybe after the answer is sent
        listed = http.get("/v1/traces", params={"session": session}).json()["data"]
        if (listed and len(listed[0]["processes"]) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [t["trace_id"] for t in listed] == [trace_id]
    assert {p.split()[0] for p in listed[0]["processes"]} == {"api", "ray-worker"}
    spans = http.get(f"/v1/traces/{trace_id}").json()["spans"]
    assert len({s["resource"]["process.pid"] for s in spans}) == 2
    assert http.get("/ui").status_code == 200
