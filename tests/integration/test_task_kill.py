"""A task worker process SIGKILLed in the middle of an agent task's tool call: after the lease, a worker in another
process reclaims the task, continues the run from its last checkpoint (the decision that chose the call is not
asked again), and the task ends once, as attempt 2. Real Redis, real checkpointer and graph; scripted replies.

Run as a module, this file is the worker: `python -m tests.integration.test_task_kill URL NAME MARKER REPLIES OUT
[GATE]`; with GATE, the worker writes GATE.NAME once it has started and claims nothing until GATE exists.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from chimera.agents.runs import AgentRuns
from chimera.agents.state import checkpoint_serializer
from chimera.chat import ChatService
from chimera.config import AgentConfig
from chimera.guardrails.base import DisabledRails
from chimera.identity.principal import Principal
from chimera.memory.checkpoint import RedisCheckpointSaver
from chimera.memory.sessions.redis_store import RedisSessionStore
from chimera.models.expert import Expert
from chimera.models.router.heuristic import HeuristicRouter
from chimera.models.specs import EXPERT_NAMES, ExpertSpec
from chimera.tasks.queue import TaskQueue
from chimera.tasks.runners import AgentRunner
from chimera.tasks.service import TaskService, TaskSubmission
from chimera.tasks.worker import TaskRunner, TaskWorker
from tests.integration.test_agent_resume import CALL, NONE, LookupOrder
from tests.unit.fakes import ScriptedEngine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
LEASE_S = 2.0
ALICE = Principal("alice", tenant="acme")


def _queue(url: str) -> TaskQueue:
    return TaskQueue(url, lease_s=LEASE_S, max_attempts=3)


async def _worker(url: str, name: str, marker: Path | None, replies: list[str]) -> dict[str, int]:
    """One worker process: the chat service on a scripted engine and the order-lookup tool; it runs until the
    queue has been empty for a second after its first task (or nothing is left waiting or leased), then says what
    it did."""
    engine = ScriptedEngine(replies)
    tool = LookupOrder(marker)
    experts = {n: Expert(n, ExpertSpec(engine="fake", system_prompt="Test."), engine, "fake") for n in EXPERT_NAMES}
    runs = AgentRuns(experts=experts, tools={tool.name: tool}, agent=AgentConfig(react_tools=("lookup_order",)),
                     checkpointer=RedisCheckpointSaver(url, serde=checkpoint_serializer()))  # type: ignore[arg-type]  # fmt: skip
    chat = ChatService(experts=experts, router=HeuristicRouter(), sessions=RedisSessionStore(url, ttl_s=600,
                       max_messages=50), rails=DisabledRails(), runs=runs)  # fmt: skip

    async def agent() -> TaskRunner:
        return AgentRunner(chat)

    queue = _queue(url)
    worker = TaskWorker(queue, {"agent": agent}, name=name)
    running = asyncio.create_task(worker.run())

    # a task another worker leased counts as running, not waiting, until its lease runs out and it is reclaimed
    async def outstanding() -> int:
        stats = await queue.stats()
        return stats["waiting"] + stats["running"]

    while not worker.running and await outstanding():  # noqa: ASYNC110 - polled: no claim event
        await asyncio.sleep(0.02)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        if worker.running or (await queue.stats())["waiting"]:
            quiet_since = time.monotonic()
        await asyncio.sleep(0.02)
    worker.stop()
    await running
    return {"tool_calls": tool.calls, "engine_requests": len(engine.requests)}


def test_a_killed_worker_task_is_reclaimed_and_finishes_from_its_checkpoint(redis_url: str, tmp_path: Path) -> None:
    url = f"{redis_url}?db=14"
    redis.Redis.from_url(url).flushdb()

    async def submit() -> str:
        service = TaskService(_queue(url), RedisSessionStore(url, ttl_s=600, max_messages=50), max_input_bytes=10_000)
        record, _ = await service.submit(ALICE, TaskSubmission("agent", {"prompt": "Where is order A-17?"}))
        await service.close()
        return record.id

    task_id = asyncio.run(submit())
    marker = tmp_path / "tool-started"

    def worker(name: str, replies: list[str], with_marker: bool) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tests.integration.test_task_kill", url, name,
                   str(marker) if with_marker else "", json.dumps(replies), str(tmp_path / f"{name}.json")]  # fmt: skip
        return subprocess.Popen(command, cwd=ROOT, stderr=(tmp_path / f"{name}.log").open("wb"))

    first = worker("worker-1", [CALL], with_marker=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
        assert time.monotonic() < deadline, "the worker never reached the tool call"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    killed_at = time.monotonic()

    second = worker("worker-2", [NONE, "Order A-17 shipped on May 2."], with_marker=False)
    assert second.wait(timeout=120) == 0, (tmp_path / "worker-2.log").read_text()
    took = time.monotonic() - killed_at

    async def outcome() -> tuple[dict[str, object], list[str], list[int]]:
        queue = _queue(url)
        record = await queue.get(task_id, ALICE)
        events = await queue.events(task_id, count=1000)
        await queue.close()
        return record.as_public(), [e.type for e in events], [e.attempt for e in events]

    task, types, attempts = asyncio.run(outcome())
    assert task["status"] == "succeeded", task
    assert task["attempt"] == 2 and str(task["result"]["text"]).startswith("Order A-17 shipped on May 2.")  # type: ignore[index]
    assert types.count("started") == 1 and types.count("retry") == 1 and types.index("started") < types.index("retry")
    assert [t for t in types if t in ("succeeded", "failed", "cancelled")] == ["succeeded"] and types[-1] == "succeeded"
    assert "checkpoint" in types and attempts[-1] == 2
    done = json.loads((tmp_path / "worker-2.json").read_text())
    assert done == {"tool_calls": 1, "engine_requests": 2}  # the killed call ran once more; no decision again
    assert took < LEASE_S + 30


if __name__ == "__main__":
    url, name, marker_path, replies, out = sys.argv[1:6]
    if len(sys.argv) > 6:
        gate = Path(sys.argv[6])
        gate.with_name(f"{gate.name}.{name}").touch()
        while not gate.exists():
            time.sleep(0.02)
    did = asyncio.run(_worker(url, name, Path(marker_path) if marker_path else None, json.loads(replies)))
    Path(out).write_text(json.dumps(did))


def test_a_hundred_tasks_over_three_worker_processes_each_end_exactly_once(redis_url: str, tmp_path: Path) -> None:
    url = f"{redis_url}?db=12"
    redis.Redis.from_url(url).flushdb()

    async def submit_all() -> list[str]:
        service = TaskService(_queue(url), RedisSessionStore(url, ttl_s=600, max_messages=50), max_input_bytes=10_000)
        ids = []
        for i in range(100):
            submission = TaskSubmission("agent", {"prompt": f"Question {i}"}, model="chimera-chat")
            ids.append((await service.submit(ALICE, submission))[0].id)
        await service.close()
        return ids

    ids = asyncio.run(submit_all())
    gate, workers = tmp_path / "go", []
    for n in range(3):
        command = [sys.executable, "-m", "tests.integration.test_task_kill", url, f"proc-{n}", "",
                   json.dumps(["Answer."] * 100), str(tmp_path / f"proc-{n}.json"), str(gate)]  # fmt: skip
        workers.append(subprocess.Popen(command, cwd=ROOT, stderr=(tmp_path / f"proc-{n}.log").open("wb")))
    # the three start claiming together: a process still importing when the others begin would find nothing left
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"go.proc-{n}").exists() for n in range(3)):
        logs = [(tmp_path / f"proc-{n}.log").read_text() for n in range(3)]
        assert all(proc.poll() is None for proc in workers), logs
        assert time.monotonic() < deadline, "the worker processes never came up"
        time.sleep(0.05)
    gate.touch()
    for n, proc in enumerate(workers):
        assert proc.wait(timeout=180) == 0, (tmp_path / f"proc-{n}.log").read_text()

    async def outcomes() -> list[list[str]]:
        queue = _queue(url)
        types = [[e.type for e in await queue.events(task_id, count=1000)] for task_id in ids]
        await queue.close()
        return types

    for types in asyncio.run(outcomes()):
        assert [t for t in types if t in ("succeeded", "failed", "cancelled")] == ["succeeded"], types
        assert types.count("started") == 1 and "retry" not in types
    # one engine request per plain expert task: each ran once, spread over the three processes
    answered = [json.loads((tmp_path / f"proc-{n}.json").read_text())["engine_requests"] for n in range(3)]
    assert sum(answered) == 100 and all(a > 0 for a in answered), answered
