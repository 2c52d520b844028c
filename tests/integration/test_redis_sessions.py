"""Sessions surviving a restart of the embedded redis-server from its own files (the rest of what a session store
promises is the `SessionStore` contract, tests/unit/test_session_store_contract.py)."""

from pathlib import Path

from chimera.memory.redis_server import EmbeddedRedis
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
