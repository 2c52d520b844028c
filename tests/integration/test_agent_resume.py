"""A ReAct run checkpointed in a real Redis, its process SIGKILLed in the middle of a tool call, resumed by a
fresh process from its last checkpoint (scripted engine replies; the checkpointer, graph and Redis are real).

Run as a module, this file is the child: `python -m tests.integration.test_agent_resume URL SESSION MARKER`.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar
from uuid import uuid4

import pytest
from pydantic import BaseModel

from chimera.agents.graph_kind import PendingToolCall, RunOutcome
from chimera.agents.runs import AgentRuns, RunSettings
from chimera.agents.state import checkpoint_serializer
from chimera.config import AgentConfig
from chimera.memory.checkpoint import RedisCheckpointSaver
from chimera.messages import ChatMessage
from chimera.models.expert import Expert
from chimera.models.specs import EXPERT_NAMES, ExpertSpec
from chimera.tools.base import Tool
from tests.unit.fakes import ScriptedEngine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CALL = json.dumps({"tool": "lookup_order", "arguments": {"order": "A-17"}})
NONE = json.dumps({"tool": "none"})


class LookupArgs(BaseModel):
    order: str


class LookupOrder(Tool):
    """Looks an order up; with `marker` set, says it started (by creating the file) and then hangs."""

    name: ClassVar[str] = "lookup_order"
    description: ClassVar[str] = "Status of an order."
    Args: ClassVar[type[BaseModel]] = LookupArgs

    def __init__(self, marker: Path | None = None) -> None:
        self.marker = marker
        self.calls = 0

    async def run(self, args: LookupArgs) -> str:
        self.calls += 1
        if self.marker is not None:
            self.marker.touch()
            await asyncio.sleep(300)
        return f"order {args.order} shipped on May 2"


def _runs(url: str, replies: list[str], tool: LookupOrder) -> tuple[AgentRuns, ScriptedEngine]:
    engine = ScriptedEngine(replies)
    experts = {n: Expert(n, ExpertSpec(engine="fake", system_prompt="Test."), engine, "fake") for n in EXPERT_NAMES}
    saver = RedisCheckpointSaver(url, serde=checkpoint_serializer())
    agent = AgentConfig(react_tools=("lookup_order",))
    return AgentRuns(experts=experts, tools={tool.name: tool}, agent=agent, checkpointer=saver), engine  # type: ignore[arg-type]


async def _child(url: str, session: str, marker: Path) -> None:
    runs, _ = _runs(url, [CALL], LookupOrder(marker))
    question = [ChatMessage(role="user", content="Where is order A-17?")]
    async for _ in runs.run(RunSettings("react", "chat"), question, session):
        pass


def test_a_run_killed_during_a_tool_call_resumes_from_its_last_checkpoint(redis_url: str, tmp_path: Path) -> None:
    session, marker = f"killed-{uuid4().hex[:8]}", tmp_path / "tool-started"
    command = [sys.executable, "-m", "tests.integration.test_agent_resume", redis_url, session, str(marker)]
    with (tmp_path / "child.log").open("wb") as log, subprocess.Popen(command, cwd=ROOT, stderr=log) as child:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            assert time.monotonic() < deadline, "the child never reached the tool call"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL

    async def resume() -> tuple[str, RunOutcome, LookupOrder, ScriptedEngine]:
        tool = LookupOrder()
        runs, engine = _runs(redis_url, [NONE, "Order A-17 shipped on May 2."], tool)
        status = await runs.status(session)
        assert (status.status, status.next, status.reason) == ("paused", ("act",), "interrupted")
        assert status.pending == (PendingToolCall("lookup_order", {"order": "A-17"}),)
        settings, deltas = await runs.resume(session, approve=True)
        assert settings == RunSettings("react", "chat")
        items = [d async for d in deltas]
        text = "".join(d for d in items if isinstance(d, str))
        outcome = items[-1]
        assert isinstance(outcome, RunOutcome)
        assert (await runs.status(session)).status == "done"
        return text, outcome, tool, engine

    text, outcome, tool, engine = asyncio.run(resume())
    assert text == "Order A-17 shipped on May 2." and outcome.stop_reason == "answered"
    assert tool.calls == 1  # the killed call ran again, once
    # the decision that chose the call was not asked again: the resumed run began at `act`
    assert len(engine.requests) == 2
    assert "shipped on May 2" in engine.requests[0].messages[-1].content  # the next decision saw the result


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
