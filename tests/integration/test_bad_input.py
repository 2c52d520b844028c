"""Bad input that needs a real engine to judge (a prompt over the context window) gets a clear OpenAI-style error,
with nothing of the replica (traceback, pid, address) in it, and the real server keeps serving. Request validation
without an engine is tested in-process, fast: tests/unit/test_chat_service.py."""

import httpx
import pytest

from tests.integration.conftest import TestServer

GOOD = {"model": "chimera-chat", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def http(server: TestServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


def test_prompt_over_the_context_window_is_400(http: httpx.Client) -> None:
    # under the character limit, over the engine's 4096-token window (digits tokenize one per token)
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": " ".join("7" * 5000)}]}
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={**body, "stream": stream})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "context_length_exceeded"
        leaks = ("Traceback", 'File "', "pid=", "ip=", "actor_id", "ray::", ".py")
        assert not any(leak in error["message"] for leak in leaks), error["message"]  # nothing of the replica


def test_server_still_serves_after_all_that(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["status"] == "ok"
    response = http.post("/v1/chat/completions", json=GOOD)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
