"""The sessions API: GET /v1/sessions (paged), GET and DELETE /v1/sessions/{id}, and the SDK's wrappers.

In-process (httpx's ASGI transport) with two API keys, real Redis, the real rails and extractive memory, a scripted
engine; the SDK against the same app behind real uvicorn. Another key's session is as unknown as a missing one.
"""

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from chimera.client import Client, ClientError
from chimera.config import ChimeraConfig
from chimera.guardrails.nemo_rails import NemoRails
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, local_config, served

ALICE, BOB = "alice-sessions-key-0123", "bob-sessions-key-01234"
NONE = json.dumps({"tool": "none"})


@pytest.fixture(scope="module")
def ids() -> tuple[str, str]:
    """Principal ids of this run's two keys: the Redis server is shared, their session lists must start empty."""
    run = uuid.uuid4().hex[:8]
    return f"alice-{run}", f"bob-{run}"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, ids: tuple[str, str]) -> ChimeraConfig:
    keys = [{"key": ALICE, "id": ids[0]}, {"key": BOB, "id": ids[1]}]
    return local_config(tmp_path_factory.mktemp("chimera-sessions"), server={"api_keys": keys})


class Caller:
    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http, self.headers = http, {"authorization": f"Bearer {key}"}

    async def chat(self, content: str, *, session: str | None = None, model: str = "chimera-chat") -> httpx.Response:
        headers = {**self.headers, **({"x-session-id": session} if session else {})}
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        response = await self.http.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response

    async def call(self, method: str, path: str, **params: str | int) -> httpx.Response:
        return await self.http.request(method, path, headers=self.headers, params=params)


@pytest.fixture
async def stack(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails
) -> AsyncIterator[tuple[Service, ScriptedEngine, Caller, Caller]]:
    engine = ScriptedEngine([])
    async with in_process(config, engine, redis_url, nemo_rails) as (service, http):
        yield service, engine, Caller(http, ALICE), Caller(http, BOB)
        await service.chat.drain()


async def test_a_key_lists_its_own_sessions_newest_first_in_pages(
    stack: tuple[Service, ScriptedEngine, Caller, Caller],
) -> None:
    _, engine, alice, bob = stack
    engine.replies += ["One.", "Two.", "Three.", "Once.", "Again."]
    run = uuid.uuid4().hex[:8]
    names = [f"list-{run}-{i}" for i in range(3)]
    for name in names:
        await alice.chat(f"Hello {name}", session=name)
    one_shot = (await alice.chat("Just once")).headers["x-session-id"]

    listed = (await alice.call("GET", "/v1/sessions")).json()
    assert [s["id"] for s in listed["data"]] == names[::-1]  # the one-shot session is not listed
    assert all(s["messages"] == 2 and s["object"] == "session" for s in listed["data"])
    assert listed["has_more"] is False and listed["first_id"] == names[2] and listed["last_id"] == names[0]

    first = (await alice.call("GET", "/v1/sessions", limit=2)).json()
    assert [s["id"] for s in first["data"]] == [names[2], names[1]] and first["has_more"] is True
    rest = (await alice.call("GET", "/v1/sessions", limit=2, after=first["last_id"])).json()
    assert [s["id"] for s in rest["data"]] == [names[0]] and rest["has_more"] is False

    await alice.chat("Continuing it", session=one_shot)  # a continued one-shot session is listed, first
    assert (await alice.call("GET", "/v1/sessions", limit=1)).json()["data"][0]["id"] == one_shot
    assert (await bob.call("GET", "/v1/sessions")).json()["data"] == []

    for params, param in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"after": "nope"}, "after")):
        refused = await alice.call("GET", "/v1/sessions", **params)  # type: ignore[arg-type]
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text


async def test_a_session_reads_as_its_turns_and_run(stack: tuple[Service, ScriptedEngine, Caller, Caller]) -> None:
    _, engine, alice, bob = stack
    session = f"read-{uuid.uuid4().hex[:8]}"
    engine.replies += ["Hello Ada.", NONE, "Nothing to compute."]
    await alice.chat("Hi, I am Ada.", session=session)
    await alice.chat("Anything to compute?", session=session, model="chimera")
    body = (await alice.call("GET", f"/v1/sessions/{session}")).json()
    assert body["id"] == session and body["object"] == "session"
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Hi, I am Ada."), ("assistant", "Hello Ada."),
        ("user", "Anything to compute?"), ("assistant", "Nothing to compute."),
    ]  # fmt: skip
    assert body["run"]["status"] == "done" and body["run"]["session"] == session
    for method in ("GET", "DELETE"):  # another key: as unknown as an id nobody used
        for path in (f"/v1/sessions/{session}", f"/v1/sessions/never-{uuid.uuid4().hex}"):
            response = await bob.call(method, path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found"
    assert len((await alice.call("GET", f"/v1/sessions/{session}")).json()["messages"]) == 4
    bad = await alice.call("GET", "/v1/sessions/not a valid id")
    assert bad.status_code == 400, bad.text


async def test_deleting_a_session_forgets_its_turns_checkpoints_and_memory(
    stack: tuple[Service, ScriptedEngine, Caller, Caller], redis_url: str
) -> None:
    service, engine, alice, _ = stack
    session = f"gone-{uuid.uuid4().hex[:8]}"
    engine.replies += [NONE, "Noted: the code word is heliotrope."]
    await alice.chat("Remember the code word heliotrope.", session=session, model="chimera")
    await service.chat.drain()  # the turn is read into the session's memory
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert [k async for k in redis.scan_iter(match=f"*{session}*")]  # turns, owner, checkpoints, memory
        deleted = await alice.call("DELETE", f"/v1/sessions/{session}")
        assert deleted.status_code == 200 and deleted.json() == {
            "id": session, "object": "session.deleted", "deleted": True
        }  # fmt: skip
        assert [k async for k in redis.scan_iter(match=f"*{session}*")] == []
    finally:
        await redis.aclose()
    assert (await alice.call("GET", f"/v1/sessions/{session}")).status_code == 404
    assert session not in [s["id"] for s in (await alice.call("GET", "/v1/sessions")).json()["data"]]
    assert (await alice.call("DELETE", f"/v1/sessions/{session}")).status_code == 404
    assert (await service.memory.state_info(session)).tokens_read == 0


def test_the_sdk_wraps_sessions_models_and_embeddings(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails
) -> None:
    engine = ScriptedEngine(["Hi.", "Hi again."])
    run = uuid.uuid4().hex[:8]
    with served(config, engine, redis_url, nemo_rails) as url, Client(url, api_key=ALICE) as alice:
        for i in range(2):
            alice.chat("Hello", model="chimera-chat", session_id=f"sdk-{run}-{i}")
        page = alice.sessions(limit=1)
        assert [s["id"] for s in page.data] == [f"sdk-{run}-1"] and page.has_more
        every = [s["id"] for s in alice.all_sessions(page_size=1)]
        assert every[:2] == [f"sdk-{run}-1", f"sdk-{run}-0"] and len(every) == len(set(every))
        assert [m["content"] for m in alice.session(f"sdk-{run}-0")["messages"]] == ["Hello", "Hi."]
        alice.delete_session(f"sdk-{run}-0")
        with pytest.raises(ClientError) as missing:
            alice.session(f"sdk-{run}-0")
        assert missing.value.status == 404 and missing.value.code == "session_not_found"
        assert alice.model("chimera")["id"] == "chimera" and alice.models()[-1]["id"] == "all-minilm-l6-v2"
        with pytest.raises(ClientError) as unknown:
            alice.model("gpt-9")
        assert unknown.value.status == 404
        vectors = alice.embed(["a lighthouse", "a rock"])
        assert len(vectors) == 2 and len(vectors[0]) == 384
