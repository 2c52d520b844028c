"""Extractive session memory on a real redis-server, and the `recall` tool over it: read, recall, forget,
concurrent reads, a 10 MB read in bounded memory, and bad input."""

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import LongMemoryError
from chimera.memory.long_context.extractive import ExtractiveMemory
from chimera.memory.long_context.factory import build_long_memory
from chimera.memory.sessions.base import InvalidSessionIdError
from chimera.tools.base import ToolError
from chimera.tools.recall import Recall

pytestmark = pytest.mark.integration

HANDBOOK = """Travel policy. Employees book economy class for flights under six hours.

Expenses. Meals are reimbursed up to 45 euros per day with receipts.

Security. Laptops must use full-disk encryption and a screen lock after five minutes.

Holidays. Every employee has 27 days of paid leave per year, plus public holidays."""


@pytest.fixture
async def memory(redis_url: str) -> AsyncIterator[ExtractiveMemory]:
    store = ExtractiveMemory(redis_url, ttl_s=3600)
    yield store
    await store.close()


def _session() -> str:
    return f"mem-{uuid4().hex[:10]}"


async def test_recall_finds_the_passage_that_answers(memory: ExtractiveMemory) -> None:
    session = _session()
    info = await memory.read(session, HANDBOOK)
    assert info.mode == "extractive" and info.tokens_read > 40 and info.state_bytes > 0
    found = await memory.recall(session, "How many days of paid leave do I get?", max_tokens=20)
    assert "27 days of paid leave" in found.text
    assert len(found.text.split()) <= 21  # clipped to max_tokens words (plus the ellipsis)
    assert found.tokens_read == info.tokens_read


async def test_recall_does_not_change_what_is_stored(memory: ExtractiveMemory, redis_url: str) -> None:
    import redis

    session = _session()
    await memory.read(session, HANDBOOK)
    client = redis.Redis.from_url(redis_url)
    before = (
        client.lrange(f"chimera:memory:{session}:passages", 0, -1),
        client.hgetall(f"chimera:memory:{session}:info"),
    )
    for query in ("laptop encryption", "meals", ""):
        await memory.recall(session, query)
    after = client.lrange(f"chimera:memory:{session}:passages", 0, -1), client.hgetall(f"chimera:memory:{session}:info")
    assert before == after


async def test_more_reads_are_recalled_and_forget_drops_everything(memory: ExtractiveMemory) -> None:
    session = _session()
    await memory.read(session, HANDBOOK)
    assert "economy" in (await memory.recall(session, "flight class")).text  # indexed and cached
    await memory.read(session, "The office wifi password rotates every Monday.")
    assert "wifi" in (await memory.recall(session, "wifi password")).text  # the cache saw the new read
    await memory.forget(session)
    assert (await memory.state_info(session)).tokens_read == 0
    assert (await memory.recall(session, "wifi password")).text == ""
    await memory.read(session, "Parking is free on weekends.")
    found = await memory.recall(session, "wifi parking")
    assert "Parking" in found.text and "wifi" not in found.text  # no stale index after forget


async def test_concurrent_reads_to_one_session_lose_nothing(memory: ExtractiveMemory) -> None:
    session = _session()
    texts = [f"Fact number {i}: the code word is zebra{i}." for i in range(20)]
    infos = await asyncio.gather(*(memory.read(session, t) for t in texts))
    total = (await memory.state_info(session)).tokens_read
    assert total == sum(len(t.split()) for t in texts) == max(i.tokens_read for i in infos)
    for i in (0, 7, 19):
        assert f"zebra{i}" in (await memory.recall(session, f"zebra{i}")).text


async def test_a_10_mb_read_is_streamed_in_bounded_memory(memory: ExtractiveMemory) -> None:
    session = _session()
    paragraph = "Quarterly revenue grew in every region while costs stayed flat across the year. " * 12
    text = ("\n\n".join([paragraph] * 10_500) + "\n\nThe launch date of project Nimbus is March 3.")[:10_500_000]
    assert len(text) > 10_000_000
    tracemalloc.start()
    info = await memory.read(session, text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.state_bytes >= len(text.encode()) * 0.9
    assert peak < 40_000_000, f"peak {peak / 1e6:.1f} MB while reading 10 MB"  # passages are cut per MiB block
    assert "Nimbus is March 3" in (await memory.recall(session, "When does project Nimbus launch?")).text
    await memory.forget(session)


async def test_empty_text_and_bad_session_ids(memory: ExtractiveMemory) -> None:
    session = _session()
    assert (await memory.read(session, "")).tokens_read == 0
    assert (await memory.read(session, "   \n\n ")).tokens_read == 0
    with pytest.raises(InvalidSessionIdError):
        await memory.read("../etc/passwd", "text")


async def test_recall_tool_answers_from_the_session_and_reports_failures(memory: ExtractiveMemory) -> None:
    session = _session()
    await memory.read(session, HANDBOOK)
    tool = Recall(memory, session)
    assert "45 euros" in await tool.call({"query": "meal allowance"})
    assert await tool.call({"query": "quantum chromodynamics"}) == "nothing in this conversation's memory matches"
    with pytest.raises(ToolError, match="invalid arguments"):
        await tool.call({"query": ""})
    other = Recall(memory, _session())  # another session sees none of it
    assert "45 euros" not in await other.call({"query": "meal allowance"})


async def test_unreachable_redis_is_a_memory_error_and_the_tool_reports_it(tmp_path) -> None:
    dead = build_long_memory(MemoryConfig(), f"unix://{tmp_path}/no.sock")
    with pytest.raises(LongMemoryError, match="cannot"):
        await dead.read("s", "text")
    with pytest.raises(ToolError, match="memory unavailable"):
        await Recall(dead, "s").call({"query": "anything"})
    await dead.close()
