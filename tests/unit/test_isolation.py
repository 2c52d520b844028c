"""Principals: each API key acts as one (tenant, groups, role, limits). In-process over httpx's ASGI transport, with
real Redis, the real index (MiniLM) and the real rails; a scripted engine.

Covers: no key or a wrong key is 401; a session belongs to the key that made it (another key gets 404 for its
turns, its run status and its resume, and the owner's history is untouched); the agent's grounding and search see
only the caller's tenant and groups; per-key limits answer 429 with Retry-After while other keys go on; a
`max_tokens` above the key's cap is 400; the Redis key store issues, resolves and revokes keys; refusals are
audit events.
"""

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio
import yaml

from chimera.config import ChimeraConfig, load_config
from chimera.guardrails.nemo_rails import NemoRails
from chimera.identity.keys import AuthenticationError, Authenticator, RedisKeyStore
from chimera.service import Service
from chimera.tools.search.factory import build_ingestor, open_index
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process

ROOT = Path(__file__).parents[2]
NONE = json.dumps({"tool": "none"})
CALL = json.dumps({"tool": "calculator", "arguments": {"expression": "2 + 2"}})
ALICE, BOB, CAROL = "alice-key-0123456789", "bob-key-01234567890", "carol-key-0123456789"

DOCS = {  # file name: (tenant, acl, text)
    "acme-budget.md": ("acme", (), "# Zephyr\n\nThe Zephyr project budget is 4.2 million euros for 2027."),
    "acme-payroll.md": ("acme", ("finance",), "# Zephyr payroll\n\nThe Zephyr project budget for salaries is 1.1M."),
    "globex-budget.md": ("globex", (), "# Zephyr\n\nThe Zephyr project budget is 9 million dollars at Globex."),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path_factory.mktemp("chimera-keys"))
    raw["server"] = {
        **raw.get("server", {}),
        "key_store": True,
        "api_keys": [
            {"key": ALICE, "id": "alice", "tenant": "acme", "groups": ["eng"]},
            {"key": BOB, "id": "bob", "tenant": "globex"},
            {"key": CAROL, "id": "carol", "tenant": "acme", "limits": {"requests_per_minute": 2, "max_tokens": 64}},
        ],
    }
    path = Path(raw["data_dir"]) / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    folder = Path(raw["data_dir"]) / "docs"
    folder.mkdir()
    with open_index(config.search, config.index_dir) as index:
        ingestor = build_ingestor(config.search, index, config.index_dir)
        for name, (tenant, acl, text) in DOCS.items():
            (folder / name).write_text(text)
            report = ingestor.ingest([folder / name], tenant=tenant, acl=acl)
            assert report.count("added") == 1, report.summary()
    return config


class Caller:
    """One API key's view of the server."""

    def __init__(self, http: httpx.AsyncClient, key: str | None) -> None:
        self.http = http
        self.headers = {"authorization": f"Bearer {key}"} if key else {}

    async def chat(self, content: str, *, model: str = "chimera-chat", session: str | None = None, **body: object):
        headers = {**self.headers, **({"x-session-id": session} if session else {})}
        payload = {"model": model, "messages": [{"role": "user", "content": content}], **body}
        return await self.http.post("/v1/chat/completions", json=payload, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path, headers=self.headers)

    async def post(self, path: str, body: object) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.headers)


class Stack:
    def __init__(self, service: Service, engine: ScriptedEngine, http: httpx.AsyncClient) -> None:
        self.service, self.engine, self.http = service, engine, http

    def caller(self, key: str | None) -> Caller:
        return Caller(self.http, key)


@pytest.fixture
async def stack(config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails) -> AsyncIterator[Stack]:
    engine = ScriptedEngine([])
    async with in_process(config, engine, redis_url, nemo_rails) as (service, http):
        yield Stack(service, engine, http)


def audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "chimera.audit"]


async def test_requests_without_a_valid_key_are_401_and_healthz_needs_none(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chimera.audit")
    for key in (None, "not-a-key-anyone-issued"):
        response = await stack.caller(key).chat("Hello")
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert (await stack.caller(None).get("/v1/models")).status_code == 401
    assert (await stack.http.get("/healthz")).status_code == 200
    assert stack.engine.requests == []
    refused = [a for a in audits(caplog) if a["event"] == "auth_refused"]
    assert len(refused) == 3 and all("not-a-key" not in json.dumps(a) for a in refused)  # no token in the log


async def test_a_session_belongs_to_the_key_that_made_it(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chimera.audit")
    alice, bob = stack.caller(ALICE), stack.caller(BOB)
    stack.engine.replies += ["Hello Ada.", CALL]
    first = await alice.chat("Hi, my name is Ada.", session="iso-shared-id")
    assert first.status_code == 200, first.text
    paused = await alice.chat("What is 2 + 2?", model="chimera", session="iso-shared-id", interrupt_before=["act"])
    assert paused.json()["chimera"]["run"]["status"] == "paused"
    history = await stack.service.chat.sessions.load("iso-shared-id")

    taken = await bob.chat("What is my name?", session="iso-shared-id")
    assert taken.status_code == 404, taken.text
    assert taken.json()["error"]["code"] == "session_not_found"
    assert (await bob.get("/v1/sessions/iso-shared-id/run")).status_code == 404
    assert (await bob.post("/v1/sessions/iso-shared-id/resume", {"approve": True})).status_code == 404
    assert (await bob.get("/v1/sessions/never-made/run")).status_code == 404
    assert await stack.service.chat.sessions.load("iso-shared-id") == history  # nothing of Bob's went in
    assert len(stack.engine.requests) == 2  # Bob's requests reached no model
    foreign = [(a["principal"], a["action"]) for a in audits(caplog) if a["event"] == "foreign_session"]
    assert foreign == [("bob", "chat"), ("bob", "run_status"), ("bob", "resume")]

    status = (await alice.get("/v1/sessions/iso-shared-id/run")).json()
    assert (status["status"], status["reason"]) == ("paused", "approval")  # still Alice's to approve
    # a server-issued id is the caller's too
    stack.engine.replies.append("Hi.")
    fresh = await bob.chat("Hello")
    issued = fresh.headers["x-session-id"]
    assert (await alice.chat("Hello", session=issued)).status_code == 404


async def test_grounding_sees_only_the_callers_tenant_and_groups(stack: Stack) -> None:
    question = "What is the budget of the Zephyr project?"
    sources: dict[str, set[str]] = {}
    said = {"alice": "The Zephyr project budget is 4.2 million euros [1].",
            "bob": "The Zephyr project budget is 9 million dollars [1]."}  # fmt: skip
    for name, key in (("alice", ALICE), ("bob", BOB)):
        stack.engine.replies += [NONE, said[name]]
        response = await stack.caller(key).chat(question, model="chimera", max_tokens=32)
        assert response.status_code == 200, response.text
        citations = response.json().get("chimera", {}).get("citations", [])
        sources[name] = {Path(c["source"]).name for c in citations}
        heard = "\n".join(m.content for r in stack.engine.requests[-2:] for m in r.messages)
        assert ("9 million dollars" in heard) == (name == "bob")
        assert "1.1M" not in heard  # the finance group's document: neither is in it
    assert sources["alice"] == {"acme-budget.md"}, sources
    assert sources["bob"] == {"globex-budget.md"}, sources


async def test_a_key_over_its_limits_gets_429_and_the_others_go_on(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chimera.audit")
    carol, alice = stack.caller(CAROL), stack.caller(ALICE)
    too_long = await carol.chat("Hello", max_tokens=65)
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "max_tokens_exceeded"
    stack.engine.replies += ["One.", "Two.", "Three."]
    codes = [(await carol.chat("Hello")).status_code for _ in range(2)]
    refused = await carol.chat("Hello")
    assert codes == [200, 200] and refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "requests_per_minute"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await alice.chat("Hello")).status_code == 200
    assert [a["principal"] for a in audits(caplog) if a["event"] == "rate_limited"] == ["carol"]


async def test_the_key_store_issues_resolves_and_revokes_keys(
    stack: Stack, config: ChimeraConfig, redis_url: str
) -> None:
    store = RedisKeyStore(redis_url)
    try:
        issued = await store.create(tenant="globex", groups=("ops",), role="admin")
        assert issued.token.startswith("chm-") and issued.principal.tenant == "globex"
        assert issued.principal.id in {p.id for p in await store.list()}
        stack.engine.replies.append("Hello.")
        assert (await stack.caller(issued.token).chat("Hello")).status_code == 200
        authenticator = Authenticator(config.server, store, cache_s=0)
        assert (await authenticator.authenticate(f"Bearer {issued.token}")).groups == ("ops",)
        stored = redis.asyncio.Redis.from_url(redis_url)
        keys = await stored.keys("chimera:apikey*")
        assert len(keys) >= 2
        for key in keys:
            assert issued.token.encode() not in key + (await stored.dump(key) or b"")  # hashed at rest
        await stored.aclose()
        assert await store.revoke(issued.principal.id) and not await store.revoke(issued.principal.id)
        with pytest.raises(AuthenticationError):
            await authenticator.authenticate(f"Bearer {issued.token}")
    finally:
        await store.close()


def test_keys_cli_creates_lists_and_revokes(config: ChimeraConfig, redis_url: str, tmp_path: Path, capsys) -> None:
    from chimera.cli import main

    path = tmp_path / "config.yaml"
    raw = json.loads(config.model_dump_json())
    raw["redis"]["url"] = redis_url
    path.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(path), "keys", "create", "--tenant", "acme", "--group", "ops", "--rpm", "5"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("chm-") and created["limits"]["requests_per_minute"] == 5
    assert main(["--config", str(path), "keys", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert created["id"] in {p["id"] for p in listed} and all("token" not in p for p in listed)
    assert main(["--config", str(path), "keys", "revoke", created["id"]]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "keys", "revoke", created["id"]]) == 2
    assert "no key with id" in capsys.readouterr().err
    for bad in (["--tenant", "a b"], ["--tenant", "acme", "--rpm", "0"]):
        assert main(["--config", str(path), "keys", "create", *bad]) == 2
        assert capsys.readouterr().err.startswith("chimera: ")
