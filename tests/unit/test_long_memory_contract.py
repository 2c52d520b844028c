"""The `LongMemory` contract on `ExtractiveMemory`, over the real redis-server of the `redis_url` fixture (the
Mamba memory runs it in tests/integration/test_mamba_memory.py, where its Ray actors are)."""

from collections.abc import AsyncIterator

import pytest
import redis

from chimera.memory.long_context.extractive import ExtractiveMemory
from tests.contracts.long_memory import LongMemoryContract, Stored, session


class TestExtractiveMemory(LongMemoryContract):
    @pytest.fixture
    async def memory(self, redis_url: str) -> AsyncIterator[ExtractiveMemory]:
        memory = ExtractiveMemory(redis_url, ttl_s=3600)
        yield memory
        await memory.close()

    @pytest.fixture
    def stored(self, redis_url: str) -> Stored:
        client = redis.Redis.from_url(redis_url)

        def snapshot(session_id: str) -> object:
            base = f"chimera:memory:{session_id}"
            return client.lrange(f"{base}:passages", 0, -1), client.hgetall(f"{base}:info")

        return snapshot

    async def test_blank_text_reads_nothing(self, memory: ExtractiveMemory) -> None:
        # extractive only: a model reads whitespace as tokens
        assert (await memory.read(session(), "   \n\n ")).tokens_read == 0
