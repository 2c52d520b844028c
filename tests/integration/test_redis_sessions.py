"""Sessions on a real redis-server (the embedded one), including a server restart from its own files."""

from pathlib import Path

import pytest
import redis

from chimera.memory.redis_server import EmbeddedRedis
from chimera.memory.sessions.base import InvalidSessionIdError
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.messages import ChatMessage


def _msg(role: str, text: str) -> ChatMessage:
    return ChatMessage(role=role, content=text)  # type: ignore[arg-type]


async def test_session_survives_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        store = RedisSessionStore(url, ttl_s=60, max_messages=10)
        await store.append("s1", [_msg("user", "hi"), _msg("assistant", "hello")])
        await store.append("s1", [_msg("user", "again")])
        assert [m.content for m in await store.load("s1")] == ["hi", "hello", "again"]
        await store.close()
    finally:
        server.stop()

    restarted = EmbeddedRedis(tmp_path / "redis")
    url = restarted.start()
    try:
        store = RedisSessionStore(url, ttl_s=60, max_messages=10)
        assert [m.content for m in await store.load("s1")] == ["hi", "hello", "again"]
        assert await store.load("unknown") == []
        await store.close()
    finally:
        restarted.stop()


async def test_trim_expiry_delete_and_bad_ids(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        store = RedisSessionStore(url, ttl_s=30, max_messages=3)
        await store.append("s", [_msg("user", str(i)) for i in range(5)])
        assert [m.content for m in await store.load("s")] == ["2", "3", "4"]
        assert 0 < redis.Redis.from_url(url).ttl("chimera:session:s") <= 30
        await store.delete("s")
        assert await store.load("s") == []
        for bad in ["", "a b", "x" * 129, "../etc", "s\n"]:
            with pytest.raises(InvalidSessionIdError):
                await store.load(bad)
        await store.close()
    finally:
        server.stop()
