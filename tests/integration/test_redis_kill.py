"""The embedded redis-server SIGKILLed under a running `chimera serve`: its supervisor starts it again from the
append-only file, requests fail fast (503) meanwhile and then succeed on the same server, no stored turn is lost."""

import os
import signal
import time
import uuid

import httpx
import redis

from tests.integration.conftest import TestServer


def test_requests_succeed_again_after_redis_is_killed_and_no_stored_turn_is_lost(server: TestServer) -> None:
    session = f"redis-kill-{uuid.uuid4().hex[:8]}"
    key = f"chimera:session:{session}"
    sessions = redis.Redis(unix_socket_path=str(server.data_dir / "redis" / "redis.sock"), socket_timeout=2)

    def ask(text: str) -> httpx.Response:
        body = {"model": "chimera-chat", "messages": [{"role": "user", "content": text}], "max_tokens": 8}
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"x-session-id": session},
                          timeout=120)  # fmt: skip

    first = ask("My favourite colour is teal.")
    assert first.status_code == 200, first.text
    stored = sessions.lrange(key, 0, -1)
    assert len(stored) == 2  # the question and the answer
    time.sleep(1.1)  # appendfsync everysec: what was answered a second ago is on disk
    killed = int(sessions.info("server")["process_id"])
    os.kill(killed, signal.SIGKILL)

    started, statuses = time.monotonic(), []
    while time.monotonic() - started < 30:
        response = ask("What is my favourite colour?")
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        assert response.status_code == 503 and response.headers["retry-after"], response.text  # fails fast
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    assert time.monotonic() - started < 15, statuses  # back within seconds, without restarting the server

    turns = sessions.lrange(key, 0, -1)  # the client reconnects to the new server
    assert int(sessions.info("server")["process_id"]) != killed
    assert turns[:2] == stored and len(turns) == 4, turns  # the first turn survived, the second was added
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    sessions.close()
