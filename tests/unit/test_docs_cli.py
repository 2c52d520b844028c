"""`chimera docs list|show|delete|wipe` on a tiny corpus ingested with `chimera ingest` (the real MiniLM, the
embedded graph store): what is listed (tenant, ACL, chunk count, ingestion time), what a deletion removes from
every index and the knowledge graph, and the refusals (an unknown source, a source in two tenants, a wipe without
`--yes`).
"""

import json
import time
from pathlib import Path

import pytest

from chimera.cli import main
from chimera.config import ChimeraConfig
from chimera.memory.graph.knowledge import KnowledgeGraph
from chimera.tools.search.factory import open_graph_store, open_index
from chimera.tools.search.types import SearchFilters
from tests.unit.http_server import local_config

DOCS = {  # file name: text
    "zephyr.md": "# Zephyr\n\nThe Zephyr project budget is 4.2 million euros for 2027.",
    "orion.md": "# Orion\n\nOrion ships the telescope firmware in March.\n\n## Team\n\nLed by Ada Quill.",
    "payroll.md": "# Payroll\n\nSalaries for the Zephyr team total 1.1 million euros.",
}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[ChimeraConfig, Path, Path]:
    """The config, its file, and a folder of the docs: zephyr and orion in `default`, payroll in `acme` (finance
    only)."""
    (tmp_path / "data").mkdir()
    config = local_config(tmp_path / "data")
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    path = tmp_path / "data" / "config.yaml"
    assert main(["--config", str(path), "ingest", str(folder / "zephyr.md"), str(folder / "orion.md")]) == 0
    payroll = str(folder / "payroll.md")
    assert main(["--config", str(path), "ingest", payroll, "--tenant", "acme", "--acl", "finance"]) == 0
    return config, path, folder


def docs(path: Path, *args: str) -> int:
    return main(["--config", str(path), "docs", *args])


def listed(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert docs(path, "list", "--json", *args) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def graph_sources(config: ChimeraConfig) -> set[str]:
    """The sources of the chunks the knowledge graph holds mentions of."""
    store = open_graph_store(config.search, config.index_dir)
    try:
        chunk_ids = {chunk_id for chunk_id, _, _ in KnowledgeGraph(store).mentions()}
    finally:
        store.close()
    with open_index(config.search, config.index_dir) as index:
        return {c.source for c in index.table if c.id in chunk_ids} | (chunk_ids - {c.id for c in index.table})


def test_list_shows_each_document_with_tenant_acl_chunks_and_ingestion_time(
    corpus: tuple[ChimeraConfig, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path, folder = corpus
    everything = listed(path, capsys)
    assert [(d["tenant"], Path(str(d["source"])).name) for d in everything] == [
        ("acme", "payroll.md"), ("default", "orion.md"), ("default", "zephyr.md"),
    ]  # fmt: skip
    by_name = {Path(str(d["source"])).name: d for d in everything}
    assert by_name["payroll.md"]["acl"] == ["finance"] and by_name["zephyr.md"]["acl"] == []
    assert by_name["orion.md"]["chunk_count"] == 2 and by_name["zephyr.md"]["chunk_count"] == 1  # two headings
    assert all(time.time() - 300 < float(str(d["ingested_at"])) <= time.time() for d in everything)
    assert by_name["zephyr.md"]["metadata"] == {"type": "md", "filename": "zephyr.md"}

    assert [d["tenant"] for d in listed(path, capsys, "--tenant", "acme")] == ["acme"]
    assert listed(path, capsys, "--tenant", "nobody") == []

    assert docs(path, "list") == 0
    table = capsys.readouterr().out
    assert "finance" in table and str(folder / "orion.md") in table and "3 documents, 4 chunks" in table


def test_show_prints_a_documents_chunks_and_refuses_an_unknown_or_ambiguous_source(
    corpus: tuple[ChimeraConfig, Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path, folder = corpus
    capsys.readouterr()
    assert docs(path, "show", str(folder / "orion.md"), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["heading_path"] for c in shown["chunks"]] == [["Orion"], ["Orion", "Team"]]
    assert "Ada Quill" in shown["chunks"][1]["text"] and shown["tenant"] == "default"

    monkeypatch.chdir(folder)  # a relative path names the absolute source it was ingested as
    assert docs(path, "show", "zephyr.md") == 0
    assert "4.2 million euros" in capsys.readouterr().out

    assert docs(path, "show", "missing.md") == 2
    assert "no indexed document missing.md" in capsys.readouterr().err
    assert docs(path, "show", "payroll.md", "--tenant", "default") == 2
    assert "in tenant default" in capsys.readouterr().err

    assert main(["--config", str(path), "ingest", str(folder / "zephyr.md"), "--tenant", "acme"]) == 0
    capsys.readouterr()
    assert docs(path, "show", "zephyr.md") == 2
    assert "indexed in tenants acme, default" in capsys.readouterr().err
    assert docs(path, "show", "zephyr.md", "--tenant", "acme") == 0


def test_delete_removes_a_document_from_every_index_and_the_graph(
    corpus: tuple[ChimeraConfig, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path, folder = corpus
    orion = str(folder / "orion.md")
    assert orion in graph_sources(config)

    assert docs(path, "delete", orion, str(folder / "nothing.md")) == 2  # one unknown: nothing is deleted
    assert orion in {d["source"] for d in listed(path, capsys)}

    capsys.readouterr()
    assert docs(path, "delete", orion) == 0
    assert "2 chunks removed" in capsys.readouterr().out
    assert orion not in {d["source"] for d in listed(path, capsys)}
    assert orion not in graph_sources(config) and str(folder / "zephyr.md") in graph_sources(config)
    with open_index(config.search, config.index_dir) as index:
        assert len(index) == len(index.bm25) == len(index.dense) == len(index.graph) == 2
        for retriever in ("bm25", "dense", "graph"):
            found = index.retrievers[retriever].retrieve("Orion telescope firmware Ada Quill", 5, SearchFilters())
            assert all(r.source != orion for r in found), retriever


def test_wipe_needs_yes_and_removes_one_tenant_or_all(
    corpus: tuple[ChimeraConfig, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path, _ = corpus
    capsys.readouterr()
    assert docs(path, "wipe", "--tenant", "acme") == 1
    assert "would remove 1 documents (1 chunks) of tenant acme; pass --yes" in capsys.readouterr().err
    assert len(listed(path, capsys)) == 3
    with pytest.raises(SystemExit):  # neither a tenant nor --all: argparse refuses
        docs(path, "wipe", "--yes")

    assert docs(path, "wipe", "--tenant", "acme", "--yes") == 0
    assert [d["tenant"] for d in listed(path, capsys)] == ["default", "default"]
    assert docs(path, "wipe", "--all", "--yes") == 0
    assert listed(path, capsys) == [] and graph_sources(config) == set()
