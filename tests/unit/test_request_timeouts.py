"""Slow requests and slow clients are cut off: a chat past `server.request_timeout_s` is stopped (504, or an in-band
error event on a stream under way) and its generation aborted; a client that trickles its headers is answered 408
and disconnected after `server.header_timeout_s` while the server goes on answering others. And what one-shot
requests leave in Redis: their session, owner and agent checkpoints expire after `redis.unnamed_session_ttl_s`.

In-process (httpx's ASGI transport) where HTTP framing does not matter, real uvicorn where it does; a scripted
engine that writes a word every `word_delay_s`, real Redis, no rails (they are not what is timed here).
"""

import json
import socket
import time

import httpx
import pytest
import redis.asyncio as aioredis

from chimera.config import ChimeraConfig
from chimera.guardrails.base import DisabledRails
from chimera.models.router.heuristic import HeuristicRouter
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, local_config, served

LONG = "word " * 400  # 20 s at 50 ms a word: only a deadline ends it early
BODY = {"model": "chimera-chat", "messages": [{"role": "user", "content": "Write a lot."}], "max_tokens": 400}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    return local_config(tmp_path_factory.mktemp("chimera-data"))


@pytest.fixture(scope="module")
def quick(config: ChimeraConfig) -> ChimeraConfig:
    """The config with a 1.5 s request deadline and 1 s for request headers."""
    server = config.server.model_copy(update={"request_timeout_s": 1.5, "header_timeout_s": 1.0})
    return config.model_copy(update={"server": server})


async def test_a_json_answer_past_its_deadline_is_a_504_and_its_generation_stops(
    quick: ChimeraConfig, redis_url: str
) -> None:
    engine = ScriptedEngine([LONG, "Hello."], word_delay_s=0.05)
    async with in_process(quick, engine, redis_url, DisabledRails(), HeuristicRouter()) as (service, http):
        started = time.monotonic()
        response = await http.post("/v1/chat/completions", json=BODY, headers={"x-session-id": "deadline-json"})
        waited = time.monotonic() - started
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["code"] == "deadline_exceeded" and "server.request_timeout_s" in error["message"]
        assert 1.4 < waited < 4, waited
        assert (await engine.health()).running == 0  # the engine request was closed, not left generating
        assert await service.chat.sessions.load("deadline-json") == []  # a stopped answer is no turn
        engine.word_delay_s = 0.0
        after = await http.post("/v1/chat/completions", json=BODY)
        assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == "Hello."


async def test_a_stream_past_its_deadline_ends_with_an_error_event_and_its_generation_stops(
    quick: ChimeraConfig, redis_url: str
) -> None:
    engine = ScriptedEngine([LONG], word_delay_s=0.05)
    async with in_process(quick, engine, redis_url, DisabledRails(), HeuristicRouter()) as (_, http):
        started = time.monotonic()
        response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
        waited = time.monotonic() - started
    assert response.status_code == 200  # the headers went out with the first word
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "deadline_exceeded" and error["type"] == "timeout_error", error
    words = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert 3 < len(words.split()) < 60, words  # some of the answer came, far from all of it
    assert all(json.loads(e)["choices"][0].get("finish_reason") is None for e in events[:-2])  # no normal end
    assert 1.4 < waited < 4, waited
    assert (await engine.health()).running == 0


async def test_a_stream_whose_first_word_comes_after_the_deadline_is_a_504(
    quick: ChimeraConfig, redis_url: str
) -> None:
    engine = ScriptedEngine(["Too late."], word_delay_s=3.0)
    async with in_process(quick, engine, redis_url, DisabledRails(), HeuristicRouter()) as (_, http):
        started = time.monotonic()
        response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
        waited = time.monotonic() - started
    assert response.status_code == 504 and response.json()["error"]["code"] == "deadline_exceeded", response.text
    assert 1.4 < waited < 2.9, waited  # not the 3 s of the first word
    assert (await engine.health()).running == 0


def test_a_client_that_trickles_its_headers_is_cut_off_while_others_are_served(
    quick: ChimeraConfig, redis_url: str
) -> None:
    with served(quick, ScriptedEngine([]), redis_url, DisabledRails()) as url:
        host, port = url.removeprefix("http://").split(":")
        others: list[int] = []
        reply = b""
        with socket.create_connection((host, int(port)), timeout=0.1) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: chimera\r\nX-Slow: ")
            while time.monotonic() - started < 5:
                try:
                    reply = slow.recv(65536)
                    break  # an answer, or b"" when the server closed the connection
                except TimeoutError:
                    pass
                if not others and time.monotonic() - started > 0.3:  # meanwhile another client is served
                    others.append(httpx.get(f"{url}/healthz", timeout=5).status_code)
                try:
                    slow.sendall(b"a")  # one more byte of a header that never ends
                except OSError:
                    break
            waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"connection: close" in reply and 0.9 < waited < 3, waited
    assert others == [200]


async def test_a_one_shot_agent_run_leaves_its_checkpoints_for_minutes_and_a_continued_one_for_days(
    config: ChimeraConfig, redis_url: str
) -> None:
    none = json.dumps({"tool": "none"})
    engine = ScriptedEngine([none, "Hello.", none, "Hello again."])
    redis = aioredis.Redis.from_url(redis_url)
    async with in_process(config, engine, redis_url, DisabledRails(), HeuristicRouter()) as (_, http):
        ask = {"model": "chimera", "messages": [{"role": "user", "content": "Hi"}]}
        first = await http.post("/v1/chat/completions", json=ask)
        assert first.status_code == 200, first.text
        session = first.headers["x-session-id"]
        try:
            keys = sorted([k.decode() async for k in redis.scan_iter(match=f"*{session}*")])
            assert f"chimera:session:{session}" in keys and f"chimera:session-owner:{session}" in keys
            assert any(k.startswith("chimera:checkpoint:") for k in keys), keys
            ttls = {k: await redis.ttl(k) for k in keys}
            assert all(0 < t <= config.redis.unnamed_session_ttl_s for t in ttls.values()), ttls
            second = await http.post("/v1/chat/completions", json=ask, headers={"x-session-id": session})
            assert second.status_code == 200, second.text
            ttls = {k: await redis.ttl(k) for k in keys}  # continued: the session's full expiry, checkpoints too
            assert all(config.redis.unnamed_session_ttl_s < t <= config.redis.session_ttl_s for t in ttls.values())
        finally:
            await redis.aclose()
