"""Durable tasks through the HTTP API: the real app, real Redis, the real chat service on a scripted engine, workers
in this process (the Ray workers' kill tests are in tests/integration/test_task_workers.py)."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from chimera.config import ChimeraConfig, load_config
from chimera.guardrails.nemo_rails import NemoRails
from chimera.models.router.heuristic import HeuristicRouter
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process
from tests.unit.task_harness import task_workers

ROOT = Path(__file__).resolve().parents[2]
ADMIN, ALICE, BOB = "admin-key-0123456789", "alice-key-0123456789", "bob-key-01234567890"
CALL = json.dumps({"tool": "calculator", "arguments": {"expression": "17 * 23"}})
NONE = json.dumps({"tool": "none"})


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path_factory.mktemp("chimera-tasks"))
    raw["server"] = {**raw.get("server", {}), "api_keys": [
        {"key": ADMIN, "id": "admin", "role": "admin"},
        {"key": ALICE, "id": "alice", "tenant": "acme"},
        {"key": BOB, "id": "bob", "tenant": "globex"},
    ]}  # fmt: skip
    raw["tasks"] = {"lease_s": 10.0, "retry_backoff_s": 0.1, "worker_concurrency": 2, "cancel_grace_s": 1.0,
                    "max_input_bytes": 4096}  # fmt: skip
    path = Path(raw["data_dir"]) / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


class Stack:
    def __init__(self, service: Service, engine: ScriptedEngine, http: httpx.AsyncClient) -> None:
        self.service, self.engine, self.http = service, engine, http

    async def submit(self, key: str, body: dict[str, object]) -> httpx.Response:
        return await self.http.post("/v1/tasks", json=body, headers=_auth(key))

    async def task(self, key: str, task_id: str) -> httpx.Response:
        return await self.http.get(f"/v1/tasks/{task_id}", headers=_auth(key))

    async def until(self, key: str, task_id: str, *statuses: str, timeout_s: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = (await self.task(key, task_id)).json()
            if body["status"] in statuses:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"task {task_id} is {body['status']}, not {statuses}, after {timeout_s} s")

    async def events(self, key: str, task_id: str, **headers: str) -> list[dict[str, object]]:
        response = await self.http.get(f"/v1/tasks/{task_id}/events", headers={**_auth(key), **headers})
        assert response.status_code == 200, response.text
        return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def stack(config: ChimeraConfig, redis_db: str, nemo_rails: NemoRails) -> AsyncIterator[Stack]:
    engine = ScriptedEngine([])
    async with in_process(config, engine, redis_db, nemo_rails, router=HeuristicRouter()) as (service, http):
        yield Stack(service, engine, http)


async def test_an_agent_task_runs_on_a_worker_and_its_events_replay_from_the_start(
    stack: Stack, config: ChimeraConfig, redis_db: str
) -> None:
    stack.engine.replies += [CALL, NONE, "The product is 391."]
    submitted = await stack.submit(ALICE, {"kind": "agent", "input": {"prompt": "What is 17 * 23?"},
                                           "metadata": {"ticket": "T-1"}})  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    task = submitted.json()
    assert task["status"] == "queued" and task["model"] == "chimera" and task["session_id"] == f"task-{task['id']}"
    assert submitted.headers["location"] == f"/v1/tasks/{task['id']}"
    async with task_workers(config, stack.service, redis_db):
        done = await stack.until(ALICE, task["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["result"]["text"].startswith("The product is 391.") and done["attempt"] == 1
    assert done["metadata"] == {"ticket": "T-1"} and done["finished_at"] >= done["started_at"] >= done["created_at"]
    events = await stack.events(ALICE, task["id"])
    types = [e["type"] for e in events]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded" and types.count("succeeded") == 1
    assert {"tool_call", "tool_result", "delta"} <= set(types)
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["data"]["observation"] == "391"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    # the session holds the turn, owned by the task's principal
    assert await stack.service.chat.sessions.owner(task["session_id"]) == "alice"


async def test_an_event_stream_cut_after_k_events_resumes_with_no_gap_and_no_duplicate(
    stack: Stack, config: ChimeraConfig, redis_db: str
) -> None:
    stack.engine.replies += ["one two three four five six seven eight"]
    task = (await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": "Count"}})).json()
    async with task_workers(config, stack.service, redis_db):
        await stack.until(ALICE, task["id"], "succeeded")
    everything = await stack.events(ALICE, task["id"])
    for k in (1, 3, len(everything) - 1):
        rest = await stack.events(ALICE, task["id"], **{"last-event-id": everything[k - 1]["id"]})
        assert everything[:k] + rest == everything
    by_query = await stack.http.get(f"/v1/tasks/{task['id']}/events", params={"after": everything[2]["id"]},
                                    headers=_auth(ALICE))  # fmt: skip
    assert by_query.text.count("data: ") == len(everything) - 3
    assert "".join(e["data"].get("text", "") for e in everything if e["type"] == "delta").startswith("one two")


async def test_the_same_idempotency_key_returns_the_task_and_runs_it_once(
    stack: Stack, config: ChimeraConfig, redis_db: str
) -> None:
    body = {"kind": "agent", "model": "chimera-chat", "input": {"prompt": "Hi"}, "idempotency_key": "order-42"}
    first, again = await stack.submit(ALICE, body), await stack.submit(ALICE, body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await stack.submit(ALICE, {**body, "input": {"prompt": "Something else"}})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    bobs = await stack.submit(BOB, body)  # keys are per principal
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]
    stack.engine.replies += ["Hello.", "Hello, Bob."]
    async with task_workers(config, stack.service, redis_db):
        await stack.until(ALICE, first.json()["id"], "succeeded")
        await stack.until(BOB, bobs.json()["id"], "succeeded")
    assert len(stack.engine.requests) == 2


async def test_a_hundred_tasks_over_three_workers_each_end_exactly_once(
    stack: Stack, config: ChimeraConfig, redis_db: str
) -> None:
    stack.engine.replies += [f"Answer {i}." for i in range(100)]
    ids = []
    for i in range(100):
        response = await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": f"Q{i}"}})
        ids.append(response.json()["id"])
    async with task_workers(config, stack.service, redis_db, count=3) as workers:
        for task_id in ids:
            await stack.until(ALICE, task_id, "succeeded", "failed", timeout_s=60)
    for task_id in ids:
        events = await stack.events(ALICE, task_id)
        assert [e["type"] for e in events if e["type"] in ("succeeded", "failed", "cancelled")] == ["succeeded"]
        assert [e["type"] for e in events].count("started") == 1
    ran_by = {(await stack.events(ALICE, t))[1]["data"]["worker"] for t in ids[:30]}
    assert len(ran_by) > 1 and ran_by <= {w.name for w in workers}
    assert len(stack.engine.requests) == 100


async def test_bad_submissions_get_clear_errors_and_nothing_is_queued(stack: Stack, redis_db: str) -> None:
    cases = [
        ({"kind": "teleport", "input": {}}, 400, "invalid_kind"),
        ({"kind": "agent", "input": {"prompt": "x" * 5000}}, 413, "input_too_large"),
        ({"kind": "agent", "model": "gpt-9", "input": {"prompt": "Hi"}}, 404, "model_not_found"),
        ({"kind": "agent", "input": {"prompt": "Hi"}, "idempotency_key": "has spaces"}, 400, "invalid_idempotency_key"),
        ({"kind": "agent", "input": {}}, 400, "invalid_input"),
        ({"kind": "agent", "input": {"prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}]}}, 400,
         "invalid_input"),
        ({"kind": "agent", "input": {"prompt": "Hi", "interrupt_before": ["nap"]}}, 400, "invalid_value"),
        ({"kind": "agent", "input": {"prompt": "Hi"}, "priority": "urgent"}, 400, "invalid_value"),
        ({"kind": "agent", "input": {"prompt": "Hi"}, "metadata": {"k": 5}}, 400, "invalid_value"),
        ({"kind": "agent", "input": {"prompt": "Hi"}, "session_id": "bad id!"}, 400, "invalid_session_id"),
        ({"kind": "ingest", "input": {"paths": ["/etc"]}}, 403, "permission_denied"),
        ({"kind": "agent", "input": "not an object"}, 400, None),
    ]  # fmt: skip
    for body, status, code in cases:
        response = await stack.submit(ALICE, body)
        assert response.status_code == status, (body, response.text)
        assert code is None or response.json()["error"]["code"] == code, (body, response.text)
    missing = await stack.submit(ADMIN, {"kind": "eval", "input": {"eval": "router", "data": "/no/such.jsonl"}})
    assert missing.status_code == 400 and "no such file" in missing.json()["error"]["message"]
    listed = await stack.http.get("/v1/tasks", headers=_auth(ALICE))
    assert listed.json()["data"] == []
    for bad_query in ({"limit": 0}, {"status": "sleeping"}, {"kind": "x"}, {"cursor": "yesterday"}):
        assert (await stack.http.get("/v1/tasks", params=bad_query, headers=_auth(ALICE))).status_code == 400


async def test_unknown_and_foreign_tasks_are_404_and_states_refuse_what_they_cannot_do(stack: Stack) -> None:
    task = (await stack.submit(ALICE, {"kind": "agent", "input": {"prompt": "Hi"}})).json()
    for method, path in [("GET", ""), ("POST", "/cancel"), ("POST", "/resume"), ("DELETE", ""), ("GET", "/events")]:
        for key, task_id in [(ALICE, "0" * 32), (BOB, task["id"])]:
            response = await stack.http.request(method, f"/v1/tasks/{task_id}{path}", headers=_auth(key))
            assert response.status_code == 404 and response.json()["error"]["code"] == "task_not_found", path
    resumed = await stack.http.post(f"/v1/tasks/{task['id']}/resume", json={"approve": True}, headers=_auth(ALICE))
    assert resumed.status_code == 409 and resumed.json()["error"]["code"] == "task_not_paused"
    deleted = await stack.http.delete(f"/v1/tasks/{task['id']}", headers=_auth(ALICE))
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "task_not_finished"
    cursor = {**_auth(ALICE), "last-event-id": "../../x"}
    bad_cursor = await stack.http.get(f"/v1/tasks/{task['id']}/events", headers=cursor)
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["code"] == "invalid_cursor"
    admin = await stack.task(ADMIN, task["id"])  # admins read every task
    assert admin.status_code == 200 and admin.json()["owner"] == "alice"
    # Bob cannot learn of Alice's session through a task either
    await stack.service.chat.sessions.claim("alice-notes", "alice")
    foreign = await stack.submit(BOB, {"kind": "agent", "input": {"prompt": "Hi"}, "session_id": "alice-notes"})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "session_not_found"


async def test_cancel_in_every_state(stack: Stack, config: ChimeraConfig, redis_db: str) -> None:
    queued = (await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": "A"}})).json()
    cancelled = await stack.http.post(f"/v1/tasks/{queued['id']}/cancel", headers=_auth(ALICE))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"  # at once, no worker
    again = await stack.http.post(f"/v1/tasks/{queued['id']}/cancel", headers=_auth(ALICE))
    assert again.json()["status"] == "cancelled"  # idempotent
    assert [e["type"] for e in await stack.events(ALICE, queued["id"])] == ["queued", "cancelled"]

    stack.engine.word_delay_s = 0.05
    stack.engine.replies += [" ".join(["word"] * 400), CALL]
    running = (await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": "B"}})).json()
    async with task_workers(config, stack.service, redis_db):
        await stack.until(ALICE, running["id"], "running")
        await asyncio.sleep(0.3)
        await stack.http.post(f"/v1/tasks/{running['id']}/cancel", headers=_auth(ALICE))
        stopped = await stack.until(ALICE, running["id"], "cancelled", timeout_s=5)
        assert stopped["error"]["code"] == "cancelled"
        stack.engine.word_delay_s = 0.0
        approval = {"kind": "agent", "input": {"prompt": "C", "interrupt_before": ["act"]}}
        paused = (await stack.submit(ALICE, approval)).json()
        waiting = await stack.until(ALICE, paused["id"], "paused")
        assert waiting["pending"][0]["tool"] == "calculator"
        cancel_paused = await stack.http.post(f"/v1/tasks/{paused['id']}/cancel", headers=_auth(ALICE))
        assert cancel_paused.json()["status"] == "cancelled"
    words = [e for e in await stack.events(ALICE, running["id"]) if e["type"] == "delta"]
    assert 0 < len(words) < 400  # stopped in the middle of its answer
    finished = await stack.http.post(f"/v1/tasks/{running['id']}/cancel", headers=_auth(ALICE))
    assert finished.json()["status"] == "cancelled"  # a finished task stays as it ended
    types = [e["type"] for e in await stack.events(ALICE, running["id"])]
    assert types.count("cancelled") == 1 and types[-1] == "cancelled" and "cancel_requested" in types
    assert (await stack.http.delete(f"/v1/tasks/{running['id']}", headers=_auth(ALICE))).json()["deleted"] is True
    gone = await stack.task(ALICE, running["id"])
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "task_expired"


async def test_a_paused_agent_task_resumes_when_approved(stack: Stack, config: ChimeraConfig, redis_db: str) -> None:
    stack.engine.replies += [CALL, NONE, "It is 391."]
    task = await stack.submit(ALICE, {"kind": "agent", "input": {"prompt": "17 * 23?", "interrupt_before": ["act"]}})
    task_id = task.json()["id"]
    async with task_workers(config, stack.service, redis_db):
        paused = await stack.until(ALICE, task_id, "paused")
        assert paused["pending"] == [{"type": "tool_call", "tool": "calculator",
                                      "arguments": {"expression": "17 * 23"}}] or paused["pending"]  # fmt: skip
        resumed = await stack.http.post(f"/v1/tasks/{task_id}/resume", json={"approve": True}, headers=_auth(ALICE))
        assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
        done = await stack.until(ALICE, task_id, "succeeded", "failed")
    assert done["status"] == "succeeded" and done["result"]["text"].startswith("It is 391.")
    types = [e["type"] for e in await stack.events(ALICE, task_id)]
    assert types.index("paused") < types.index("resumed") < types.index("tool_result") and types[-1] == "succeeded"
    assert types.count("tool_result") == 1


async def test_a_finished_tasks_result_expires_and_then_reads_as_expired(
    config: ChimeraConfig, redis_db: str, nemo_rails: NemoRails
) -> None:
    short = config.model_copy(update={"tasks": config.tasks.model_copy(update={"result_ttl_s": 1})})
    engine = ScriptedEngine(["Hi."])
    async with in_process(short, engine, redis_db, nemo_rails, router=HeuristicRouter()) as (service, http):
        stack = Stack(service, engine, http)
        task = await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": "Hi"}})
        async with task_workers(short, service, redis_db):
            await stack.until(ALICE, task.json()["id"], "succeeded")
        await asyncio.sleep(1.5)
        expired = await stack.task(ALICE, task.json()["id"])
        assert expired.status_code == 410 and expired.json()["error"]["code"] == "task_expired"
        assert (await stack.task(BOB, task.json()["id"])).status_code == 404  # another's is still just unknown


async def test_a_task_lists_only_for_its_owner_newest_first_in_pages(stack: Stack) -> None:
    ids = [(await stack.submit(ALICE, {"kind": "agent", "input": {"prompt": f"{i}"}})).json()["id"] for i in range(5)]
    await stack.submit(BOB, {"kind": "agent", "input": {"prompt": "mine"}})
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await stack.http.get("/v1/tasks", params=params, headers=_auth(ALICE))).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    queued = await stack.http.get("/v1/tasks", params={"status": "succeeded"}, headers=_auth(ALICE))
    assert queued.json()["data"] == []


async def test_healthz_counts_waiting_and_running_tasks_and_live_workers(
    stack: Stack, config: ChimeraConfig, redis_db: str
) -> None:
    for i in range(3):
        await stack.submit(ALICE, {"kind": "agent", "model": "chimera-chat", "input": {"prompt": f"{i}"}})
    idle = (await stack.http.get("/healthz")).json()["tasks"]
    assert idle == {"waiting": 3, "running": 0, "workers": 0}
    stack.engine.word_delay_s = 0.05
    stack.engine.replies += [" ".join(["word"] * 100)] * 3
    async with task_workers(config, stack.service, redis_db, count=2):
        deadline = time.monotonic() + 10
        while (busy := (await stack.http.get("/healthz")).json()["tasks"])["running"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert busy["workers"] == 2 and busy["waiting"] + busy["running"] == 3
