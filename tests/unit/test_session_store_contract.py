"""The `SessionStore` contract on `RedisSessionStore`, over the real redis-server of the `redis_url` fixture."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis

from chimera.memory.sessions.base import SessionStore
from chimera.memory.sessions.redis_store import RedisSessionStore
from tests.contracts.session_store import ExpiryOf, MakeStore, SessionStoreContract


class TestRedisSessionStore(SessionStoreContract):
    @pytest.fixture
    def make_store(self, redis_url: str) -> MakeStore:
        @asynccontextmanager
        async def make(ttl_s: int, max_messages: int) -> AsyncIterator[SessionStore]:
            store = RedisSessionStore(redis_url, ttl_s=ttl_s, max_messages=max_messages)
            try:
                yield store
            finally:
                await store.close()

        return make

    @pytest.fixture
    def expiry_of(self, redis_url: str) -> ExpiryOf:
        client = redis.Redis.from_url(redis_url)

        def expiry(session_id: str) -> float | None:
            ttl = client.pttl(f"chimera:session:{session_id}")
            return ttl / 1000 if ttl >= 0 else None

        return expiry
