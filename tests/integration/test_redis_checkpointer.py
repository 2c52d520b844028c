"""`RedisCheckpointSaver` on a real redis-server (the embedded one): LangGraph's conformance suite through the
async and the sync API, a graph run killed with SIGKILL and resumed, TTL and key prefixes, corrupt data."""

import asyncio
import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import uuid4

import ormsgpack
import pytest
import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.conformance.spec import (
    test_copy_thread,
    test_delete_thread,
    test_get_tuple,
    test_list,
    test_put,
    test_put_writes,
)
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config, generate_metadata

from chimera.memory.checkpoint import CheckpointError, CorruptCheckpointError, RedisCheckpointSaver, session_config
from chimera.memory.sessions.base import InvalidSessionIdError

pytestmark = pytest.mark.integration

# What the saver implements, and how many of the suite's tests that is; delete_for_runs and prune are not.
IMPLEMENTED = {"put", "put_writes", "get_tuple", "list", "delete_thread", "copy_thread"}
SUITE_SIZE = sum(
    len(tests)
    for tests in (
        test_put.ALL_PUT_TESTS,
        test_put_writes.ALL_PUT_WRITES_TESTS,
        test_get_tuple.ALL_GET_TUPLE_TESTS,
        test_list.ALL_LIST_TESTS,
        test_delete_thread.ALL_DELETE_THREAD_TESTS,
        test_copy_thread.ALL_COPY_THREAD_TESTS,
    )
)


def _prefix() -> str:
    return f"test:{uuid4().hex[:12]}"


class SyncApiAdapter(BaseCheckpointSaver[str]):
    """Presents a saver's *sync* methods as the async API the conformance suite calls, each from a worker
    thread with no event loop — the way LangGraph's `invoke` calls a checkpointer."""

    def __init__(self, inner: RedisCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.inner.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.inner.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.inner.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.inner.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.inner.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.inner.copy_thread, source_thread_id, target_thread_id)


def _registered(url: str, *, sync_api: bool) -> RegisteredCheckpointer:
    async def fresh_saver() -> AsyncIterator[BaseCheckpointSaver]:
        saver = RedisCheckpointSaver(url, key_prefix=_prefix())  # a fresh prefix for every capability suite
        if sync_api:
            yield SyncApiAdapter(saver)
            saver.close()
        else:
            yield saver
            await saver.aclose()

    name = f"RedisCheckpointSaver ({'sync' if sync_api else 'async'} API)"
    return checkpointer_test(name=name)(fresh_saver)


@pytest.mark.parametrize("sync_api", [False, True], ids=["async-api", "sync-api"])
async def test_conformance_suite(redis_url: str, sync_api: bool) -> None:
    report = await validate(_registered(redis_url, sync_api=sync_api), progress=ProgressCallbacks.verbose())
    report.print_report()
    assert {name: r.failures for name, r in report.results.items() if r.failures} == {}
    assert {name for name, r in report.results.items() if r.detected} == IMPLEMENTED
    assert report.passed_all_base()
    assert report.conformance_level() == "FULL"
    assert sum(r.tests_passed for r in report.results.values()) == SUITE_SIZE


GRAPH_SCRIPT = '''
"""Four nodes checkpointed in Redis under thread "session-123"; with `block`, `slow` sleeps until killed."""

import asyncio
import operator
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from chimera.memory.checkpoint import RedisCheckpointSaver

NODES = ("fetch", "plan", "slow", "answer")


class State(TypedDict):
    question: str
    log: Annotated[list[str], operator.add]


def build_graph(saver: RedisCheckpointSaver, runs_file: Path, *, block: bool) -> Any:
    """fetch -> plan -> slow -> answer; every node start is appended to `runs_file`."""

    def node(name: str) -> Any:
        def run(state: State) -> dict[str, list[str]]:
            with runs_file.open("a") as f:
                f.write(name + "\\n")
            if name == "slow" and block:
                time.sleep(300)
            return {"log": [name]}

        return run

    builder = StateGraph(State)
    for name in NODES:
        builder.add_node(name, node(name))
    for a, b in zip((START, *NODES), (*NODES, END)):
        builder.add_edge(a, b)
    return builder.compile(checkpointer=saver)


if __name__ == "__main__":
    url, prefix, runs = sys.argv[1:]
    graph = build_graph(RedisCheckpointSaver(url, key_prefix=prefix), Path(runs), block=True)
    asyncio.run(graph.ainvoke({"question": "q", "log": []}, {"configurable": {"thread_id": "session-123"}}))
'''


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("resume_graph", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kill_once_slow_has_started(saver: RedisCheckpointSaver, command: list[str], cwd: Path, runs: Path) -> None:
    """Run the graph script and SIGKILL it once fetch and plan are checkpointed and `slow` is running."""
    config: RunnableConfig = {"configurable": {"thread_id": "session-123"}}
    log = cwd / "child.log"
    with log.open("wb") as stderr, subprocess.Popen(command, stderr=stderr, cwd=cwd) as child:
        try:
            deadline = time.monotonic() + 60
            while True:
                assert child.poll() is None, f"the graph process exited early: {log.read_text()}"
                assert time.monotonic() < deadline, "the first checkpoints never reached Redis"
                latest = saver.get_tuple(config)
                started = runs.read_text().split() if runs.exists() else []
                if latest and latest.checkpoint["channel_values"].get("log") == ["fetch", "plan"] and "slow" in started:
                    break
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()


def test_run_killed_mid_graph_resumes_from_its_last_checkpoint(redis_url: str, tmp_path: Path) -> None:
    script, runs, prefix = tmp_path / "resume_graph.py", tmp_path / "runs.txt", _prefix()
    script.write_text(GRAPH_SCRIPT)
    saver = RedisCheckpointSaver(redis_url, key_prefix=prefix)
    _kill_once_slow_has_started(saver, [sys.executable, str(script), redis_url, prefix, str(runs)], tmp_path, runs)

    config: RunnableConfig = {"configurable": {"thread_id": "session-123"}}
    graph = _load_script(script).build_graph(saver, runs, block=False)
    assert graph.get_state(config).next == ("slow",)  # the killed run left its last checkpoint: after plan
    final = graph.invoke(None, {"configurable": {"thread_id": "session-123"}})  # sync API, in this process

    assert final["log"] == ["fetch", "plan", "slow", "answer"]
    # fetch and plan ran once; slow ran again (its first run was killed), then answer finished the graph
    assert runs.read_text().split() == ["fetch", "plan", "slow", "slow", "answer"]
    assert graph.get_state(config).next == ()
    steps = [s.metadata["step"] for s in graph.get_state_history(config) if s.metadata]
    assert steps == [4, 3, 2, 1, 0, -1]  # one checkpoint per node, __start__'s, and the input's; newest first
    saver.close()


async def _checkpoint_with_write(saver: RedisCheckpointSaver, thread_id: str) -> RunnableConfig:
    checkpoint = generate_checkpoint(channel_values={"answer": "42"}, channel_versions={"answer": 1})
    stored = await saver.aput(generate_config(thread_id), checkpoint, generate_metadata(), {"answer": 1})
    await saver.aput_writes(stored, [("answer", "43")], task_id="task-1")
    return stored


@pytest.mark.parametrize(
    ("hash_suffix", "garbage", "names"),
    [
        ("checkpoints", b"\xc1 not msgpack", "not a checkpoint envelope"),
        ("blobs", ormsgpack.packb(["msgpack", b"\xc1\xc1"]), "channel 'answer'"),
        ("writes", ormsgpack.packb(["task-1", 0, "answer", "msgpack", b"\xc1", ""]), "pending write"),
    ],
    ids=["checkpoint-record", "channel-value", "pending-write"],
)
async def test_corrupt_data_is_a_typed_error(redis_url: str, hash_suffix: str, garbage: bytes, names: str) -> None:
    prefix, thread_id = _prefix(), "session-bad"
    saver = RedisCheckpointSaver(redis_url, key_prefix=prefix)
    stored = await _checkpoint_with_write(saver, thread_id)
    raw = redis.Redis.from_url(redis_url)
    key = f"{prefix}:{{{thread_id}}}:{hash_suffix}"
    raw.hset(key, mapping=dict.fromkeys(raw.hkeys(key), garbage))

    for config in (stored, generate_config(thread_id)):  # by id and latest
        with pytest.raises(CorruptCheckpointError, match=names) as caught:
            await saver.aget_tuple(config)
        assert "session-bad" in str(caught.value)
    with pytest.raises(CorruptCheckpointError, match=names):
        [t async for t in saver.alist(generate_config(thread_id))]
    with pytest.raises(CorruptCheckpointError, match=names):
        await asyncio.to_thread(saver.get_tuple, stored)  # the sync API raises the same error
    await saver.aclose()
    saver.close()


async def test_resuming_a_graph_on_a_corrupt_checkpoint_raises_checkpoint_error(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "resume_graph.py").write_text(GRAPH_SCRIPT)
    prefix, config = _prefix(), session_config("session-9")
    saver = RedisCheckpointSaver(redis_url, key_prefix=prefix)
    graph = _load_script(tmp_path / "resume_graph.py").build_graph(saver, tmp_path / "runs.txt", block=False)
    assert (await graph.ainvoke({"question": "q", "log": []}, config))["log"] == ["fetch", "plan", "slow", "answer"]
    raw = redis.Redis.from_url(redis_url)
    key = f"{prefix}:{{session-9}}:checkpoints"
    raw.hset(key, mapping=dict.fromkeys(raw.hkeys(key), b"garbage"))
    with pytest.raises(CheckpointError, match="session-9"):
        await graph.ainvoke(None, config)
    await saver.aclose()


async def test_unreachable_redis_and_bad_settings_are_checkpoint_errors(tmp_path: Path) -> None:
    saver = RedisCheckpointSaver(f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(CheckpointError, match="cannot read a checkpoint of thread 't'"):
        await saver.aget_tuple(generate_config("t"))
    with pytest.raises(CheckpointError, match="ttl_s must be positive"):
        RedisCheckpointSaver("redis://localhost", ttl_s=0)
    with pytest.raises(InvalidSessionIdError):
        session_config("not a session id")
    await saver.aclose()


async def test_ttl_prefix_and_listing_across_threads_and_namespaces(redis_url: str) -> None:
    prefix = _prefix()
    saver = RedisCheckpointSaver(redis_url, key_prefix=prefix, ttl_s=30)
    other = RedisCheckpointSaver(redis_url, key_prefix=_prefix())
    ids = []
    for thread_id, ns in [("s1", ""), ("s1", "child:1"), ("s2", "")]:
        checkpoint = generate_checkpoint(channel_values={"a": ns}, channel_versions={"a": 1})
        ids.append(checkpoint["id"])
        config = generate_config(thread_id, checkpoint_ns=ns)
        stored = await saver.aput(config, checkpoint, generate_metadata(), {"a": 1})
        await saver.aput_writes(stored, [("ch", 1)], task_id="t")

    raw = redis.Redis.from_url(redis_url)
    keys = raw.keys(f"{prefix}:*")
    assert len(keys) == 10 and all(0 < raw.ttl(k) <= 30 for k in keys)  # five keys per thread, all expiring
    assert [t.checkpoint["id"] async for t in saver.alist(None)] == [ids[1], ids[0], ids[2]]  # s1 then s2
    assert [t.checkpoint["id"] async for t in saver.alist({"configurable": {"thread_id": "s1"}})] == ids[1::-1]
    assert [t async for t in other.alist(None)] == []
    assert await other.aget_tuple(generate_config("s1")) is None
    await saver.aclose()
    await other.aclose()


async def test_listing_pages_through_a_long_thread(redis_url: str) -> None:
    saver = RedisCheckpointSaver(redis_url, key_prefix=_prefix())
    parent, ids = generate_config("long"), []
    for step in range(150):  # more than two pages of the index
        checkpoint = generate_checkpoint()
        ids.append(checkpoint["id"])
        parent = await saver.aput(parent, checkpoint, generate_metadata(step=step, even=step % 2 == 0), {})
    newest_first = ids[::-1]

    assert [t.checkpoint["id"] async for t in saver.alist(generate_config("long"))] == newest_first
    evens = [t.metadata["step"] async for t in saver.alist(generate_config("long"), filter={"even": True}, limit=70)]
    assert evens == list(range(148, 8, -2))
    before = generate_config("long", checkpoint_id=ids[100])
    assert [t.checkpoint["id"] async for t in saver.alist(generate_config("long"), before=before)] == newest_first[50:]
    assert [t.checkpoint["id"] for t in saver.list(generate_config("long"), limit=3)] == newest_first[:3]
    await saver.aclose()
    saver.close()
