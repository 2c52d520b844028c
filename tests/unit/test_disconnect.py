"""A client that leaves stops the work it asked for, on every path: a stream closed after its first chunks frees
the engine (no generation still running a second later) for an expert, the ReAct agent, the team and a resumed
run, streamed or not. Over real HTTP (uvicorn), on a slow scripted engine."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chimera.config import ChimeraConfig
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import local_config

pytestmark = pytest.mark.unit

NONE = json.dumps({"tool": "none"})
CALL = json.dumps({"tool": "calculator", "arguments": {"expression": "17 * 23"}})
LONG = " ".join(f"word{i}" for i in range(400))  # 8 s at the engine's pace: long enough to be left
ASK = [{"role": "user", "content": "Write a long essay about rivers."}]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    return local_config(tmp_path_factory.mktemp("chimera-disconnect"))


@pytest.fixture
def slow(scripted_url: tuple[str, ScriptedEngine]) -> Iterator[tuple[str, ScriptedEngine]]:
    url, engine = scripted_url
    engine.word_delay_s = 0.02
    engine.replies.clear()
    yield url, engine
    engine.word_delay_s = 0.0
    engine.replies.clear()


def _leave_stream(url: str, path: str, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
    """Stream `body` to `path`, read until the answer's text starts, and close the connection."""
    with httpx.Client(base_url=url, timeout=30) as http, http.stream("POST", path, json=body, headers=headers) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if '"content":"word' in line.replace(" ", ""):
                break
        else:
            pytest.fail("the stream ended before its answer started")


def _leave_json(url: str, path: str, body: dict[str, Any], engine: ScriptedEngine) -> None:
    """Send `body` to `path` without streaming, and close the connection once the last reply is being generated."""
    address = httpx.URL(url)
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {address.host}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((address.host, address.port or 80), timeout=30) as sock:
        sock.sendall(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        began = time.monotonic()
        while engine.replies or not engine._active:  # every scripted reply taken, the last one running
            assert time.monotonic() - began < 30, "the request never reached its answer"
            time.sleep(0.02)


def _freed_within(engine: ScriptedEngine, seconds: float) -> float:
    """How long after the client left the engine's last generation ended; fails past `seconds`."""
    left = time.monotonic()
    while time.monotonic() - left < seconds:
        if not engine._active:
            return time.monotonic() - left
        time.sleep(0.02)
    pytest.fail(f"the engine still generates {seconds} s after the client left: {engine._active}")


@pytest.mark.parametrize(
    ("model", "replies"),
    [
        ("chimera-text", [LONG]),
        ("chimera", [NONE, LONG]),
        ("chimera-team", [json.dumps({"tasks": [{"agent": "math", "task": "Compute 17 * 23"}]}), NONE, "391.", LONG]),
    ],
    ids=["expert", "react", "team"],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_client_that_leaves_frees_the_engine(
    slow: tuple[str, ScriptedEngine], model: str, replies: list[str], stream: bool
) -> None:
    url, engine = slow
    engine.replies += replies
    body = {"model": model, "messages": ASK, "max_tokens": 1000, "stream": stream}
    if stream:
        _leave_stream(url, "/v1/chat/completions", body)
    else:
        _leave_json(url, "/v1/chat/completions", body, engine)
    assert _freed_within(engine, 1.0) < 1.0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_client_that_leaves_a_resumed_run_frees_the_engine(slow: tuple[str, ScriptedEngine], stream: bool) -> None:
    url, engine = slow
    session = f"disconnect-resume-{stream}"
    engine.replies += [CALL]
    paused = httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"x-session-id": session},
                        json={"model": "chimera", "messages": ASK, "interrupt_before": ["act"]})  # fmt: skip
    assert paused.json()["chimera"]["run"]["status"] == "paused", paused.text
    engine.replies += [NONE, LONG]
    body = {"approve": True, "stream": stream}
    if stream:
        _leave_stream(url, f"/v1/sessions/{session}/resume", body)
    else:
        _leave_json(url, f"/v1/sessions/{session}/resume", body, engine)
    assert _freed_within(engine, 1.0) < 1.0
    status = httpx.get(f"{url}/v1/sessions/{session}/run", timeout=10).json()
    assert status["status"] == "paused" and status["reason"] == "interrupted"  # resumable from its last step
