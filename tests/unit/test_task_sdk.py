"""The task SDK (`chimera.task_client` through `Client.tasks` / `AsyncClient.tasks`) and `chimera task …` against the
real server: uvicorn in a thread, real Redis, the real rails. Task workers run in a thread and event loop of their
own with their own service (to the API they are a worker process: they share only Redis), their agent tasks on a
scripted engine.

Covers: submit and idempotent submit, a reused key with another payload; every error the SDK types (not found,
expired after delete, conflicts, permission, unknown kind and model); listing across pages, newest first, with
filters; events replayed from the start and after a cursor, and across a connection cut mid-stream (reconnected
from the last event id: no gap, no duplicate); `wait` timing out; `result` raising the remote error of a cancelled
and of a failed task; an agent task streaming its answer; a paused agent task approved while its stream is open;
the CLI's submit, status, list, cancel and watch, and an ingest task watched to the end.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from chimera.cli import main
from chimera.client import AsyncClient, Client, ClientError
from chimera.config import ChimeraConfig, load_config
from chimera.guardrails.nemo_rails import NemoRails
from chimera.models.router.heuristic import HeuristicRouter
from chimera.service import build_service
from chimera.task_client import TaskCancelled, TaskConflict, TaskExpired, TaskFailed, TaskNotFound, TaskTimeout
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import served
from tests.unit.task_harness import task_workers

ROOT = Path(__file__).parents[2]
ADMIN, USER, LISTER = "task-admin-key-0123456789", "task-user-key-01234567890", "task-lister-key-0123456789"
NONE = json.dumps({"tool": "none"})
CALL = json.dumps({"tool": "calculator", "arguments": {"expression": "2 + 2"}})


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path_factory.mktemp("chimera-task-sdk"))
    raw["server"] = {**raw.get("server", {}), "api_keys": [
        {"key": ADMIN, "id": "task-admin", "tenant": "tasks", "role": "admin"},
        {"key": USER, "id": "task-user", "tenant": "tasks"},
        {"key": LISTER, "id": "task-lister", "tenant": "tasks-list"},
    ]}  # fmt: skip
    raw["tasks"] = {"lease_s": 6.0, "retry_backoff_s": 0.1}
    path = Path(raw["data_dir"]) / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def config(config_path: Path) -> ChimeraConfig:
    return load_config(config_path)


@pytest.fixture(scope="module")
def sdk_redis(redis_url: str) -> str:
    """A Redis database of this module's own: no other test's queued tasks reach its workers."""
    url = f"{redis_url}?db=11"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def url(config: ChimeraConfig, sdk_redis: str, nemo_rails: NemoRails) -> Iterator[str]:
    with served(config, ScriptedEngine([]), sdk_redis, nemo_rails) as base:  # the API runs no task itself
        yield base


@pytest.fixture
def user(url: str) -> Iterator[Client]:
    with Client(url, api_key=USER, timeout=30) as client:
        yield client


@pytest.fixture
def engine(config: ChimeraConfig, sdk_redis: str, nemo_rails: NemoRails) -> Iterator[ScriptedEngine]:
    """The scripted engine of a running task worker (add replies before submitting)."""
    engine = ScriptedEngine([])
    ready, stop, failures = threading.Event(), threading.Event(), []

    async def work() -> None:
        service = build_service(config, {name: engine for name in config.engines}, redis_url=sdk_redis,
                                rails=nemo_rails, router=HeuristicRouter())  # fmt: skip
        await service.astart()
        try:
            async with task_workers(config, service, sdk_redis):
                ready.set()
                await asyncio.to_thread(stop.wait)
        finally:
            await service.aclose()

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as e:
            failures.append(e)
        finally:
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(120) and not failures, failures
    try:
        yield engine
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures


def test_submit_returns_the_task_and_a_repeated_key_the_same_one(user: Client) -> None:
    key = f"sdk-{uuid.uuid4().hex}"
    task = user.tasks.submit("agent", {"prompt": "Hello"}, idempotency_key=key, priority="high",
                             metadata={"ticket": "T-1"})  # fmt: skip
    info = task.info
    assert (info.kind, info.status, info.model, info.priority) == ("agent", "queued", "chimera", "high")
    assert (info.metadata, info.idempotency_key, info.owner, info.tenant) == ({"ticket": "T-1"}, key, "task-user",
                                                                              "tasks")  # fmt: skip
    assert (info.attempt, info.started_at, info.result, info.error, info.terminal) == (0, None, None, None, False)
    assert abs(info.created_at - time.time()) < 60 and info.session_id == f"task-{task.id}"

    again = user.tasks.submit("agent", {"prompt": "Hello"}, idempotency_key=key, priority="high",
                              metadata={"ticket": "T-1"})  # fmt: skip
    assert again.id == task.id and user.tasks.get(task.id).info == info
    with pytest.raises(TaskConflict) as conflict:
        user.tasks.submit("agent", {"prompt": "Hello again"}, idempotency_key=key, priority="high")
    assert (conflict.value.status, conflict.value.code) == (409, "idempotency_conflict")
    assert task.cancel().status == "cancelled"


def test_refusals_raise_typed_errors(url: str, user: Client) -> None:
    with pytest.raises(TaskNotFound) as missing:
        user.tasks.get("no-such-task")
    assert (missing.value.status, missing.value.code) == (404, "task_not_found")
    refusals = [  # (submit arguments, status, code)
        ((("poem", {"prompt": "Hi"}), {}), 400, "invalid_kind"),
        ((("agent", {"prompt": "Hi", "messages": []}), {}), 400, None),
        ((("agent", {"prompt": "Hi"}), {"model": "no-such-model"}), 404, "model_not_found"),
        ((("ingest", {"paths": [str(ROOT / "docs")]}), {}), 403, "permission_denied"),
    ]
    for (args, kwargs), status, code in refusals:
        with pytest.raises(ClientError) as refused:
            user.tasks.submit(*args, **kwargs)  # type: ignore[arg-type]
        assert refused.value.status == status and (code is None or refused.value.code == code), refused.value

    task = user.tasks.submit("agent", {"prompt": "Hello"})
    with Client(url, api_key=LISTER) as other, pytest.raises(TaskNotFound):
        other.tasks.get(task.id)  # another key's task does not exist for it
    with pytest.raises(TaskConflict) as not_paused:
        task.resume(approve=True)
    assert not_paused.value.code == "task_not_paused"
    with pytest.raises(TaskConflict) as not_finished:
        task.delete()
    assert not_finished.value.code == "task_not_finished"
    assert task.cancel().status == task.cancel().status == "cancelled"  # idempotent
    task.delete()
    with pytest.raises(TaskExpired) as expired:
        task.status()
    assert (expired.value.status, expired.value.code) == (410, "task_expired")


async def test_list_follows_cursors_newest_first_and_filters(url: str) -> None:
    async with AsyncClient(url, api_key=LISTER, timeout=60) as client:
        tasks = await asyncio.gather(*(client.tasks.submit("agent", {"prompt": f"Q{i}"}) for i in range(101)))
        listed = await client.tasks.list(limit=101)  # two pages: 100, then 1 after `next_cursor`
        assert sorted(t.id for t in listed) == sorted(t.id for t in tasks)
        assert [t.created_at for t in listed] == sorted((t.info.created_at for t in tasks), reverse=True)
        assert [t.id for t in await client.tasks.list(limit=3)] == [t.id for t in listed[:3]]
        assert await client.tasks.list(kind="ingest") == []
        await asyncio.gather(*(t.cancel() for t in tasks[:5]))
        cancelled = await client.tasks.list(status="cancelled", limit=50)
        assert sorted(t.id for t in cancelled) == sorted(t.id for t in tasks[:5])
        await asyncio.gather(*(t.cancel() for t in tasks[5:]))
        assert len(await client.tasks.list(status="queued", limit=200)) == 0


def test_events_replay_resume_after_a_cursor_and_survive_a_dropped_connection(url: str, user: Client) -> None:
    task = user.tasks.submit("agent", {"prompt": "Hello"})
    task.cancel()
    events = list(task.events())
    assert [e.type for e in events] == ["queued", "cancelled"] and events[-1].terminal
    assert events[-1].data["code"] == "cancelled" and not events[0].terminal
    assert list(task.events(after=events[0].id)) == events[1:]

    with cutting_proxy(url, _after_first_event) as (proxy, sent), Client(proxy, api_key=USER) as cut:
        assert list(cut.tasks.get(task.id).events()) == events  # no gap, no duplicate
    assert len(sent) == 2  # the connection cut after the first event, and the one that resumed after it
    assert b"last-event-id" not in sent[0] and f"last-event-id: {events[0].id}".encode() in sent[1]


async def test_async_events_and_wait_timeout(url: str, user: Client) -> None:
    queued = user.tasks.submit("agent", {"prompt": "Hello"})
    async with AsyncClient(url, api_key=USER, timeout=30) as client:
        task = await client.tasks.get(queued.id)
        start = time.monotonic()
        with pytest.raises(TaskTimeout):
            await task.wait(timeout=0.5)
        assert time.monotonic() - start < 5
        await task.cancel()
        events = [e async for e in task.events()]
        assert [e.type for e in events] == ["queued", "cancelled"]
        assert [e async for e in task.events(after=events[0].id)] == events[1:]
        with pytest.raises(TaskCancelled) as cancelled:
            await task.result(timeout=10)
        assert cancelled.value.error["code"] == "cancelled" and cancelled.value.task.status == "cancelled"


def test_wait_times_out_and_result_raises_the_remote_error(user: Client) -> None:
    task = user.tasks.submit("agent", {"prompt": "Hello"})
    start = time.monotonic()
    with pytest.raises(TimeoutError):  # TaskTimeout is one
        task.wait(timeout=0.5)
    assert time.monotonic() - start < 5
    task.cancel()
    with pytest.raises(TaskFailed) as cancelled:  # TaskCancelled is one
        task.result(timeout=10)
    assert isinstance(cancelled.value, TaskCancelled) and cancelled.value.error["code"] == "cancelled"
    assert task.wait().finished_at is not None


def test_cli_submits_shows_lists_cancels_and_watches(
    config_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def chimera(*args: str) -> tuple[int, str, str]:
        code = main(["--config", str(config_path), "task", *args, "--url", url, "--api-key", USER])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = chimera("submit", "agent", "--prompt", "Hello", "--priority", "low")
    task_id = out.strip()
    assert code == 0 and len(task_id) >= 16
    code, out, _ = chimera("status", task_id)
    assert code == 0 and json.loads(out)["status"] == "queued" and json.loads(out)["priority"] == "low"
    code, out, _ = chimera("list", "--limit", "1")
    assert code == 0 and out.split()[:3] == [task_id, "agent", "queued"]
    assert chimera("cancel", task_id)[:2] == (0, f"{task_id} cancelled\n")
    code, out, err = chimera("watch", task_id)
    assert code == 1 and "[queued]" in out and f"task {task_id} cancelled: cancelled" in err
    code, _, err = chimera("status", "no-such-task")
    assert code == 2 and err.startswith("chimera: HTTP 404")
    code, _, err = chimera("submit", "agent", "--input", "[1]")
    assert code == 2 and "JSON object" in err


def test_an_agent_task_streams_its_answer_and_succeeds(user: Client, engine: ScriptedEngine) -> None:
    engine.replies.append("Hello there, friend.")
    task = user.tasks.submit("agent", {"prompt": "Say hello."}, model="chimera-chat")
    assert task.result(timeout=60)["text"] == "Hello there, friend."
    info = task.info
    assert (info.status, info.attempt, info.terminal) == ("succeeded", 1, True)
    assert info.started_at is not None and info.finished_at is not None and info.finished_at >= info.started_at
    events = list(task.events())
    types = [e.type for e in events]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded" and types.count("succeeded") == 1
    assert "".join(e.data["text"] for e in events if e.type == "delta") == "Hello there, friend."
    assert events[-1].data == info.result and events[1].attempt == 1


async def test_a_paused_agent_task_goes_on_when_approved(url: str, engine: ScriptedEngine) -> None:
    engine.replies += [CALL, NONE, "It is 4."]
    async with AsyncClient(url, api_key=USER, timeout=60) as client:
        task = await client.tasks.submit("agent", {"prompt": "What is 2 + 2?", "interrupt_before": ["act"]})
        seen = []
        async with aclosing(task.events()) as events:
            async for event in events:  # one stream: it stays open while the task is paused
                seen.append(event.type)
                if event.type == "paused":
                    paused = await task.status()
                    assert paused.status == "paused" and "calculator" in json.dumps(paused.pending)
                    assert (await task.resume(approve=True)).status in ("queued", "running")  # a worker may have it
        assert seen.index("paused") < len(seen) - 1 and seen[-1] == "succeeded"
        assert (await task.result(timeout=10))["text"] == "It is 4."
        with pytest.raises(TaskConflict):
            await task.resume()


def test_a_failed_task_raises_its_remote_error(url: str, tmp_path: Path, engine: ScriptedEngine) -> None:
    with Client(url, api_key=ADMIN, timeout=30) as admin:
        task = admin.tasks.submit("eval", {"eval": "router", "data": str(tmp_path)})  # a folder, not a JSONL file
        with pytest.raises(TaskFailed) as failed:
            task.result(timeout=60)
    assert not isinstance(failed.value, TaskCancelled) and failed.value.task.status == "failed"
    assert failed.value.error["code"] == "task_failed" and "no such data file" in failed.value.error["message"]


def test_cli_watches_an_ingest_task_to_its_result(
    config_path: Path, url: str, tmp_path: Path, engine: ScriptedEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"# {name}\n\nThe {name} file says the sky is green on Tuesdays.")
    code = main(["--config", str(config_path), "task", "submit", "ingest", "--path", str(tmp_path), "--wait",
                 "--url", url, "--api-key", ADMIN])  # fmt: skip
    out, err = capsys.readouterr()
    task_id, _, rest = out.partition("\n")
    assert code == 0, err
    lines, _, result = rest.partition("\n{")  # the events, then the result as JSON
    assert lines.startswith("[queued] ") and "\n[started] " in lines
    report = json.loads("{" + result)
    assert (report["added"], report["tenant"]) == (2, "tasks")
    assert "2/2" in err and "progress" not in lines  # the progress bar, driven by the progress events, on stderr
    with Client(url, api_key=ADMIN) as admin:
        progress = [e.data for e in admin.tasks.get(task_id).events() if e.type == "progress"]
    assert progress[-1]["files_done"] == progress[-1]["files_total"] == 2


def _after_first_event(seen: bytes) -> int | None:
    """Where to cut a response: a few bytes into what follows its first event."""
    start = seen.find(b"event: ")
    end = seen.find(b"\n\n", start) if start >= 0 else -1
    return None if end < 0 else min(len(seen), end + 2 + 5)


@contextmanager
def cutting_proxy(upstream: str, cut: Callable[[bytes], int | None]) -> Iterator[tuple[str, list[bytearray]]]:
    """A TCP relay to `upstream` that closes its first connection where `cut` says in what the server sent (a
    connection dropped mid-stream); its URL, and what each connection carried to the server."""
    target = urlsplit(upstream)
    listener = socket.create_server(("127.0.0.1", 0))
    sent: list[bytearray] = []

    def pump(src: socket.socket, dst: socket.socket, cut_at: Callable[[bytes], int | None] | None,
             record: bytearray | None) -> None:  # fmt: skip
        seen = b""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if record is not None:
                    record += data
                seen += data
                at = cut_at(seen) if cut_at else None
                dst.sendall(data if at is None else data[: max(0, at - (len(seen) - len(data)))])
                if at is not None:
                    break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream_socket = socket.create_connection((target.hostname, target.port))
                sent.append(bytearray())
                first = len(sent) == 1
                threading.Thread(target=pump, args=(client, upstream_socket, None, sent[-1]), daemon=True).start()
                threading.Thread(target=pump, args=(upstream_socket, client, cut if first else None, None),
                                 daemon=True).start()  # fmt: skip

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", sent
    finally:
        listener.close()
