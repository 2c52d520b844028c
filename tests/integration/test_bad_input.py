"""Every bad input gets a clear OpenAI-style error, never a 500, and the server keeps serving."""

import httpx
import pytest

from tests.integration.conftest import TestServer

GOOD = {"model": "chimera-chat", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def http(server: TestServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


def _post(http: httpx.Client, content: bytes | str, **headers: str) -> httpx.Response:
    return http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"model": "chimera", "messages": [', 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"model": "chimera-chat", "messages": [{"role": "user", "content": "caf\xe9"}]}', 400, "invalid_encoding"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_value"),
        (b'{"model": "chimera"}', 400, "invalid_value"),
        (b'{"model": "chimera", "messages": []}', 400, "invalid_value"),
        (b'{"model": "chimera", "messages": "hi"}', 400, "invalid_value"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_value"),
        (b'{"model": "chimera", "messages": [{"role": "wizard", "content": "hi"}]}', 400, "invalid_value"),
        (
            b'{"model": "chimera", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
            400,
            "invalid_value",
        ),
        (
            b'{"model": "chimera", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            400,
            "invalid_value",
        ),
        (b'{"model": "chimera", "messages": [{"role": "user", "content": "hi"}], "n": 3}', 400, "invalid_value"),
        (b'{"model": "chimera", "messages": [{"role": "system", "content": "only a system prompt"}]}', 400, None),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
    ],
)
def test_bad_request_is_a_clear_error(http: httpx.Client, body: bytes, status: int, code: str | None) -> None:
    response = _post(http, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code


def test_oversized_body_is_413(http: httpx.Client) -> None:
    response = _post(
        http, b'{"model": "chimera", "messages": [{"role": "user", "content": "' + b"a" * 1_100_000 + b'"}]}'
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_prompt_over_the_character_limit_is_413(http: httpx.Client) -> None:
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": "word " * 8000}]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "prompt_too_large"


def test_prompt_over_the_context_window_is_400(http: httpx.Client) -> None:
    # under the character limit, over the engine's 4096-token window (digits tokenize one per token)
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": " ".join("7" * 5000)}]}
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={**body, "stream": stream})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "context_length_exceeded"


def test_bad_session_id_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=GOOD, headers={"x-session-id": "no spaces/allowed"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_session_id"


def test_unknown_route_and_method_are_openai_errors(http: httpx.Client) -> None:
    assert http.get("/v1/nope").json()["error"]["code"] == "not_found"
    response = http.get("/v1/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_server_still_serves_after_all_that(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["status"] == "ok"
    response = http.post("/v1/chat/completions", json=GOOD)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
