"""The documents API: GET /v1/documents (the caller's tenant, paged), GET and DELETE /v1/documents/{source}, and
the SDK's wrappers.

In-process (httpx's ASGI transport) with keys of two tenants and an admin, real Redis, the real index (MiniLM, the
embedded graph store) and a scripted engine; the SDK against the same app behind real uvicorn. Another tenant's
document, and one whose ACL groups the caller lacks, are as unknown as a missing one.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from chimera.client import Client, ClientError
from chimera.config import ChimeraConfig
from chimera.guardrails.base import DisabledRails
from chimera.tools.search.factory import build_ingestor, load_index, open_index
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, local_config, served

ALICE, BOB, ADMIN = "alice-docs-key-01234567", "bob-docs-key-012345678", "admin-docs-key-01234567"
DOCS = {  # file name: (tenant, acl, text)
    "acme-budget.md": ("acme", (), "# Zephyr\n\nThe Zephyr project budget is 4.2 million euros for 2027."),
    "acme-plan.md": ("acme", ("eng",), "# Plan\n\nThe Zephyr rollout starts in March."),
    "acme-payroll.md": ("acme", ("finance",), "# Zephyr payroll\n\nThe Zephyr project budget for salaries is 1.1M."),
    "globex-budget.md": ("globex", (), "# Zephyr\n\nThe Zephyr project budget is 9 million dollars at Globex."),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ChimeraConfig:
    keys = [
        {"key": ALICE, "id": "alice", "tenant": "acme", "groups": ["eng"]},
        {"key": BOB, "id": "bob", "tenant": "globex"},
        {"key": ADMIN, "id": "admin", "tenant": "acme", "role": "admin"},
    ]
    config = local_config(tmp_path_factory.mktemp("chimera-documents"), server={"api_keys": keys})
    folder = config.data_dir / "docs"
    folder.mkdir()
    for name, (tenant, acl, text) in DOCS.items():
        (folder / name).write_text(text)
        ingest(config, folder / name, tenant, acl)
    return config


def ingest(config: ChimeraConfig, path: Path, tenant: str, acl: tuple[str, ...] = ()) -> None:
    with open_index(config.search, config.index_dir) as index:
        report = build_ingestor(config.search, index, config.index_dir).ingest([path], tenant=tenant, acl=acl)
        assert report.count("added") == 1, report.summary()


def source(config: ChimeraConfig, name: str) -> str:
    return str((config.data_dir / "docs" / name).resolve())


class Caller:
    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http, self.headers = http, {"authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, **params: str | int) -> httpx.Response:
        return await self.http.request(method, path, headers=self.headers, params=params)

    async def names(self, **params: str | int) -> list[str]:
        response = await self.call("GET", "/v1/documents", **params)
        assert response.status_code == 200, response.text
        return [Path(d["source"]).name for d in response.json()["data"]]


@pytest.fixture
async def callers(config: ChimeraConfig, redis_url: str) -> AsyncIterator[tuple[Caller, Caller, Caller]]:
    async with in_process(config, ScriptedEngine([]), redis_url, DisabledRails()) as (_, http):
        yield Caller(http, ALICE), Caller(http, BOB), Caller(http, ADMIN)


def path_of(source: str) -> str:
    return f"/v1/documents/{quote(source, safe='')}"


async def test_each_tenant_lists_only_its_own_documents_that_its_groups_see(
    callers: tuple[Caller, Caller, Caller],
) -> None:
    alice, bob, admin = callers
    assert await alice.names() == ["acme-budget.md", "acme-plan.md"]  # not payroll: finance only
    assert await bob.names() == ["globex-budget.md"]
    assert await admin.names() == ["acme-budget.md", "acme-payroll.md", "acme-plan.md"]
    assert await admin.names(tenant="globex") == ["globex-budget.md"]

    listed = (await alice.call("GET", "/v1/documents")).json()
    plan = listed["data"][1]
    assert plan["object"] == "document" and plan["tenant"] == "acme" and plan["acl"] == ["eng"]
    assert plan["chunk_count"] == 1 and plan["ingested_at"] > 0 and plan["id"] == plan["source"]

    refused = await alice.call("GET", "/v1/documents", tenant="globex")
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "tenant"


async def test_pages_follow_after_and_bad_paging_params_are_400(callers: tuple[Caller, Caller, Caller]) -> None:
    _, _, admin = callers
    first = (await admin.call("GET", "/v1/documents", limit=2)).json()
    assert [Path(d["source"]).name for d in first["data"]] == ["acme-budget.md", "acme-payroll.md"]
    assert first["has_more"] is True and first["last_id"] == first["data"][1]["source"]
    rest = (await admin.call("GET", "/v1/documents", limit=2, after=first["last_id"])).json()
    assert [Path(d["source"]).name for d in rest["data"]] == ["acme-plan.md"] and rest["has_more"] is False

    for limit in ("0", "101", "abc", "-1"):
        response = await admin.call("GET", "/v1/documents", limit=limit)
        assert response.status_code == 400, limit
        error = response.json()["error"]
        assert (
            error["param"] == "limit" and error["code"] == "invalid_value" and error["type"] == "invalid_request_error"
        )


async def test_a_document_reads_with_its_chunks_and_others_are_404(
    config: ChimeraConfig, callers: tuple[Caller, Caller, Caller]
) -> None:
    alice, bob, _ = callers
    shown = await alice.call("GET", path_of(source(config, "acme-budget.md")))
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert [c["heading_path"] for c in body["chunks"]] == [["Zephyr"]] and "4.2 million" in body["chunks"][0]["text"]

    for caller, name in ((bob, "acme-budget.md"), (alice, "globex-budget.md"), (alice, "acme-payroll.md")):
        for method in ("GET", "DELETE"):
            response = await caller.call(method, path_of(source(config, name)))
            assert response.status_code == 404, (method, name)
            assert response.json()["error"]["code"] == "document_not_found"
    unknown = await alice.call("GET", path_of("/no/such/file.md"))
    assert unknown.status_code == 404 and "/no/such/file.md" in unknown.json()["error"]["message"]


async def test_delete_removes_the_document_from_the_index(
    config: ChimeraConfig, callers: tuple[Caller, Caller, Caller]
) -> None:
    _, bob, admin = callers
    extra = config.data_dir / "docs" / "globex-extra.md"
    extra.write_text("# Nimbus\n\nNimbus is the Globex weather satellite.")
    ingest(config, extra, "globex")
    assert await bob.names() == ["globex-budget.md", "globex-extra.md"]

    refused = await bob.call("DELETE", path_of(str(extra.resolve())))  # a user key, of the document's tenant
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    deleted = await admin.call("DELETE", path_of(str(extra.resolve())), tenant="globex")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": str(extra.resolve()), "object": "document.deleted", "deleted": True,
                              "tenant": "globex", "chunk_count": 1}  # fmt: skip
    assert await bob.names() == ["globex-budget.md"]
    assert (await admin.call("DELETE", path_of(str(extra.resolve())), tenant="globex")).status_code == 404
    index = load_index(config.search, config.index_dir, None)
    assert str(extra.resolve()) not in {c.source for c in index.table}
    assert all(r.source != str(extra.resolve()) for r in index.search("Nimbus weather satellite", 5))

    extra.write_text("# Nimbus\n\nNimbus is the Globex weather satellite, again.")
    ingest(config, extra, "globex")
    gone = await admin.call("DELETE", path_of(str(extra.resolve())), tenant="globex")  # an admin, any tenant
    assert gone.status_code == 200, gone.text


def test_the_sdk_lists_reads_and_deletes_documents(config: ChimeraConfig, redis_url: str) -> None:
    extra = config.data_dir / "docs" / "acme-notes.md"
    extra.write_text("# Notes\n\nThe Zephyr kickoff is on Monday.")
    ingest(config, extra, "acme")
    with served(config, ScriptedEngine([]), redis_url, DisabledRails()) as url:
        alice = Client(url, api_key=ALICE)
        page = alice.documents(limit=1)
        assert len(page.data) == 1 and page.has_more
        names = [Path(d["source"]).name for d in alice.all_documents(page_size=1)]
        assert names == ["acme-budget.md", "acme-notes.md", "acme-plan.md"]
        assert "kickoff" in alice.document(str(extra.resolve()))["chunks"][0]["text"]
        Client(url, api_key=ADMIN).delete_document(str(extra.resolve()))
        with pytest.raises(ClientError) as refused:
            alice.document(str(extra.resolve()))
        assert refused.value.status == 404 and refused.value.code == "document_not_found"
        assert [Path(d["source"]).name for d in alice.all_documents()] == ["acme-budget.md", "acme-plan.md"]
