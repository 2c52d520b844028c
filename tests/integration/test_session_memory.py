"""Extractive session memory on a real redis-server beyond the `LongMemory` contract (which it passes in
tests/unit/test_long_memory_contract.py): its cached index after new reads and forget, a 10 MB read in bounded
memory, the `recall` tool over it, an unreachable Redis, the `chimera memory` CLI, and chat turns read into it."""

import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import yaml

from chimera.config import MemoryConfig
from chimera.memory.long_context.base import LongMemoryError
from chimera.memory.long_context.extractive import ExtractiveMemory
from chimera.memory.long_context.factory import build_long_memory
from chimera.tools.base import ToolError
from chimera.tools.recall import Recall
from tests.integration.conftest import TestServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]

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


async def test_unreachable_redis_is_a_memory_error_and_the_tool_reports_it(tmp_path: Path) -> None:
    dead = build_long_memory(MemoryConfig(), f"unix://{tmp_path}/no.sock")
    with pytest.raises(LongMemoryError, match="cannot"):
        await dead.read("s", "text")
    with pytest.raises(ToolError, match="memory unavailable"):
        await Recall(dead, "s").call({"query": "anything"})
    await dead.close()


def test_memory_cli_reads_asks_and_forgets_with_clear_errors(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path / "data")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    doc = tmp_path / "handbook.txt"
    doc.write_text(HANDBOOK, encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 menu".encode("latin-1"))

    def chimera(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "chimera.cli", "--config", str(config), "memory", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    read = chimera("read", str(doc), "--session", "cli")
    assert read.returncode == 0, read.stderr
    assert "memory: extractive" in read.stdout and '"tokens_read": 51' in read.stdout
    ask = chimera("ask", "meal reimbursement per day", "--session", "cli")
    assert "45 euros" in ask.stdout
    assert chimera("forget", "--session", "cli").returncode == 0
    assert '"tokens_read": 0' in chimera("info", "--session", "cli").stdout
    for args, message in [
        (("read", str(tmp_path / "latin1.txt"), "--session", "cli"), "is not UTF-8 text"),
        (("read", str(tmp_path / "missing.txt"), "--session", "cli"), "No such file"),
        (("ask", "x", "--session", "no spaces allowed"), "session id must be"),
    ]:
        failed = chimera(*args)
        assert failed.returncode == 2 and message in failed.stderr


def test_each_chat_turn_is_read_into_the_session_memory(server: TestServer) -> None:
    health = httpx.get(f"{server.url}/healthz", timeout=30).json()
    assert health["memory"]["mode"] == "extractive"
    session = _session()
    body = {"model": "chimera-chat", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Remember that my locker code is 4417."}]}  # fmt: skip
    assert httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"x-session-id": session},
                      timeout=120).status_code == 200  # fmt: skip
    command = [sys.executable, "-m", "chimera.cli", "--config", str(server.config_path), "memory", "ask",
               "locker code", "--session", session]  # fmt: skip
    deadline = time.monotonic() + 30
    while "4417" not in (answer := subprocess.run(command, capture_output=True, text=True, timeout=60).stdout):
        assert time.monotonic() < deadline, answer  # the read runs after the response, in the background
        time.sleep(0.5)
    assert "user: Remember that my locker code is 4417." in answer
