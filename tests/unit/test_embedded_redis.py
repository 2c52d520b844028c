"""The embedded redis-server is supervised: killed, it is back within seconds with what it had written, and the
clients (the session store, the whole chat service) go on without a restart; a server orphaned by a crashed owner
is adopted by the next one and stopped at its shutdown."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from chimera.api.app import create_app
from chimera.config import load_config
from chimera.guardrails.nemo_rails import NemoRails
from chimera.memory.redis_server import EmbeddedRedis
from chimera.memory.sessions.base import SessionError
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.messages import ChatMessage
from chimera.models.router.heuristic import HeuristicRouter
from chimera.service import build_service
from tests.unit.fakes import ScriptedEngine

ROOT = Path(__file__).parents[2]
OWNER = """
import sys, time
from pathlib import Path
from chimera.memory.redis_server import EmbeddedRedis
server = EmbeddedRedis(Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
time.sleep(600)
"""


async def _until(predicate, timeout_s: float = 10.0) -> float:
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout_s, "timed out"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_killed_server_is_restarted_and_nothing_written_before_is_lost(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", watch_interval_s=0.2)
    url = server.start()
    store = RedisSessionStore(url, ttl_s=600, max_messages=10)
    try:
        await store.append("kept", [ChatMessage(role="user", content="written before the crash")])
        await asyncio.sleep(1.2)  # appendfsync everysec: on disk by now
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        async def answers() -> bool:
            try:
                kept = [m.content for m in await store.load("kept")]
            except SessionError:
                return False
            return kept == ["written before the crash"] and server.restarts == 1

        assert await _until(answers) < 5  # the same client object: it reconnects by itself
        assert server.pid != pid
    finally:
        await store.close()
        server.stop()
    assert not server.serving()


def test_an_orphaned_server_is_adopted_and_stopped_at_shutdown(tmp_path: Path) -> None:
    owner = subprocess.Popen(  # an API process that starts the server, then crashes
        [sys.executable, "-c", OWNER, str(tmp_path / "redis")], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    orphan = int(owner.stdout.readline())
    owner.kill()
    owner.wait()

    second = EmbeddedRedis(tmp_path / "redis")
    second.start()
    assert second.pid == orphan  # reused, with its data, not a second server
    second.stop()
    assert not second.serving()
    with pytest.raises(ProcessLookupError):
        os.kill(orphan, 0)


def test_a_server_whose_owner_lives_is_reused_and_left_running(tmp_path: Path) -> None:
    owner = EmbeddedRedis(tmp_path / "redis")
    owner.start()
    try:
        tool = EmbeddedRedis(tmp_path / "redis")  # e.g. `chimera keys` beside a running `chimera serve`
        tool.start()
        tool.stop()
        assert owner.serving()
    finally:
        owner.stop()


async def test_the_service_answers_again_after_redis_dies_without_a_restart(
    tmp_path: Path, nemo_rails: NemoRails
) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "config.yaml")
    redis = EmbeddedRedis(tmp_path / "redis", watch_interval_s=0.2)
    url = redis.start()
    engine = ScriptedEngine(["One.", "Two.", "Three."])
    service = build_service(config, {"smollm2": engine}, redis_url=url, rails=nemo_rails, router=HeuristicRouter())
    await service.astart()
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": "Hello"}]}
    try:
        transport = httpx.ASGITransport(app=create_app(service, config.server))
        async with httpx.AsyncClient(transport=transport, base_url="http://chimera") as http:
            first = await http.post("/v1/chat/completions", json=body, headers={"x-session-id": "survivor"})
            assert first.status_code == 200, first.text
            await asyncio.sleep(1.2)
            assert redis.pid is not None
            os.kill(redis.pid, signal.SIGKILL)

            async def healthy_again() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await _until(healthy_again)
            again = await http.post("/v1/chat/completions", json=body, headers={"x-session-id": "survivor"})
            assert again.status_code == 200, again.text
            turns = [m.content for m in await service.chat.sessions.load("survivor")]
            assert turns == ["Hello", "One.", "Hello", "Two."]  # the turn stored before the crash is there
    finally:
        await service.aclose()
        redis.stop()
