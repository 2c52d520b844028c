"""Ingestion and hybrid search end to end: real PDF/DOCX/HTML/Markdown/text files, the packaged MiniLM embedder, the
embedded LadybugDB knowledge graph, persistence on disk, and the `chimera ingest|search|eval retrieval` CLI.

No Ray and no vLLM: the search stack runs in this process (and in `chimera` subprocesses for the CLI tests).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import docx
import pytest
import yaml
from fpdf import FPDF

from chimera.config import SearchConfig, load_config
from chimera.tools.ingest.pipeline import Ingestor, IngestReport
from chimera.tools.search.factory import build_ingestor, load_index, open_index
from chimera.tools.search.index import RETRIEVERS, HybridIndex
from chimera.tools.search.types import Citation, RetrievedChunk, SearchFilters, Section

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CONFIG = SearchConfig(max_file_bytes=1_000_000)  # a small limit, so "too large" needs no 50 MB file here

# --- the document library ------------------------------------------------------------------------------------------

PDF_PAGES = [
    "Quarterly report of the Zephyr project. This page introduces the team and the schedule.",
    "The Zephyr project budget is 4.2 million euros, approved by the steering board.",
    "Staffing: eleven engineers joined the project in March.",
]
LIGHTHOUSE = """<!doctype html><html><head><title>Coast guide</title></head><body>
<nav><a href="/">Home</a></nav><h1>Lighthouse Keeping</h1><p>Keepers lived on the cliffs.</p>
<h2>Lamps</h2><p>The Fresnel lens at Bellmore Point was installed in 1871.</p></body></html>"""
GARDEN = "# Garden Notes\n\n## Tomatoes\n\nThe Brandywine tomatoes ripen in late August beside the greenhouse.\n"
CABLE = "The submarine cable between Orkney and Shetland carries 120 megawatts of wind power.\n"


class Fact(NamedTuple):
    query: str
    file: str
    page: int | None
    heading_path: tuple[str, ...]
    phrase: str


FACTS = [
    Fact("What is the Zephyr project budget?", "report.pdf", 2, (), "4.2 million euros"),
    Fact("How often are forklifts inspected?", "manual.docx", None, ("Operations Manual", "Safety"), "every Tuesday"),
    Fact("When was the Fresnel lens installed?", "lighthouse.html", None, ("Lighthouse Keeping", "Lamps"), "1871"),
    Fact("When do Brandywine tomatoes ripen?", "garden.md", None, ("Garden Notes", "Tomatoes"), "late August"),
    Fact("How much power does the Orkney Shetland cable carry?", "cable.txt", None, (), "120 megawatts"),
]


def write_pdf(path: Path, pages: list[str], *, user_password: str | None = None) -> Path:
    pdf = FPDF()
    if user_password is not None:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def write_library(folder: Path) -> Path:
    """One file of each supported kind, each with a fact found nowhere else."""
    folder.mkdir(parents=True)
    write_pdf(folder / "report.pdf", PDF_PAGES)
    manual = docx.Document()
    manual.add_heading("Operations Manual", level=0)
    manual.add_heading("Safety", level=1)
    manual.add_paragraph("Forklifts must be inspected every Tuesday by the Halvorsen crew.")
    manual.add_heading("Canteen", level=1)
    manual.add_paragraph("The canteen serves saffron risotto on Fridays.")
    manual.save(str(folder / "manual.docx"))
    (folder / "lighthouse.html").write_text(LIGHTHOUSE)
    (folder / "garden.md").write_text(GARDEN)
    (folder / "cable.txt").write_text(CABLE)
    return folder


def outcomes(report: IngestReport) -> dict[str, tuple[str, str | None]]:
    """File name → (status, reason)."""
    return {Path(o.source).name: (o.status, o.reason) for o in report.outcomes}


def ids_of(index: HybridIndex, source: Path) -> set[str]:
    return {c.id for c in index.table if c.source == str(source)}


def everything_found(
    index: HybridIndex, query: str, k: int, filters: SearchFilters, retrievers: tuple[str, ...] = RETRIEVERS
) -> list[RetrievedChunk]:
    """What `search` and each retriever alone return for one query."""
    found = index.search(query, k, filters, retrievers=retrievers)
    for results in index.retrieve_each(query, k, filters, retrievers).values():
        found += results
    return found


def snapshot(index: HybridIndex) -> dict[str, list[tuple[str, float]]]:
    """Every retriever's and the fused results of every fact query, as (id, score)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for fact in FACTS:
        out[f"fused {fact.query}"] = [(r.id, r.score) for r in index.search(fact.query, 5)]
        for name, results in index.retrieve_each(fact.query, 5).items():
            out[f"{name} {fact.query}"] = [(r.id, r.score) for r in results]
    return out


@contextmanager
def opened(index_dir: Path, config: SearchConfig = CONFIG) -> Iterator[tuple[HybridIndex, Ingestor]]:
    with open_index(config, index_dir) as index:
        yield index, build_ingestor(config, index, index_dir)


class Built(NamedTuple):
    index: HybridIndex
    ingestor: Ingestor
    report: IngestReport
    docs: Path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("library") / "docs")


@pytest.fixture(scope="module")
def built(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The library ingested once; tests that use this do not change it."""
    index_dir = tmp_path_factory.mktemp("index")
    with opened(index_dir) as (index, ingestor):
        yield Built(index, ingestor, ingestor.ingest([library]), library)


@pytest.fixture
def docs(library: Path, tmp_path: Path) -> Path:
    """A private copy of the library, for tests that change files."""
    return Path(shutil.copytree(library, tmp_path / "docs"))


# --- ingest and search ---------------------------------------------------------------------------------------------


def test_every_file_is_added_with_its_tags(built: Built) -> None:
    assert outcomes(built.report) == {f.file: ("added", None) for f in FACTS}
    assert built.report.chunks_indexed == len(built.index) == sum(o.chunks for o in built.report.outcomes)
    assert built.report.chunks_per_s > 0
    for chunk in built.index.table:
        path = Path(chunk.source)
        assert path.parent == built.docs and path.is_absolute()
        assert len(chunk.content_hash) == 32 and chunk.tenant == "default" and chunk.acl == ()
        assert dict(chunk.metadata) == {"type": path.suffix[1:], "filename": path.name}
    pages = [c.page for c in built.index.table if c.source.endswith("report.pdf")]
    assert pages == [1, 2, 3]


@pytest.mark.parametrize("fact", FACTS, ids=[f.file for f in FACTS])
def test_search_finds_each_fact_where_it_is(built: Built, fact: Fact) -> None:
    top = built.index.search(fact.query, 3)[0]
    assert top.source == str(built.docs / fact.file)
    assert (top.chunk.page, top.chunk.heading_path) == (fact.page, fact.heading_path)
    assert fact.phrase in top.text
    for name in ("bm25", "dense"):
        assert built.index.retrievers[name].retrieve(fact.query, 3)[0].id == top.id, name
    citation = Citation.of(1, top)
    assert (citation.chunk_id, citation.source, citation.page) == (top.id, top.source, fact.page)
    assert citation.label.startswith(f"[1] {top.source}" + (f", page {fact.page}" if fact.page else ""))


def test_unchanged_files_are_skipped_and_keep_their_ids(built: Built) -> None:
    before = [c.id for c in built.index.table]
    for paths in ([built.docs], sorted(built.docs.iterdir())):
        report = built.ingestor.ingest(paths)
        assert outcomes(report) == {f.file: ("unchanged", None) for f in FACTS}
        assert report.chunks_indexed == 0
    assert [c.id for c in built.index.table] == before


@pytest.mark.parametrize(
    "query",
    [
        "",
        "  \n\t ",
        "the of and a",
        "?!… — ;",
        "\x00\x01 control",
        ("What is the budget of the Zephyr project? " * 250)[:10_000],
        " ".join(random.Random(3).choice(["alpha", "Beta", "g4mma", "ÉTÉ", "the"]) for _ in range(2000))[:10_000],
    ],
    ids=["empty", "whitespace", "stop-words", "punctuation", "control", "10k-chars", "10k-noise"],
)
def test_degenerate_queries_give_an_empty_or_best_effort_list(built: Built, query: str) -> None:
    results = {"fused": built.index.search(query, 5), **built.index.retrieve_each(query, 5)}
    for name, found in results.items():
        assert len(found) <= 5, name
        assert all(isinstance(r, RetrievedChunk) and math.isfinite(r.score) and r.score > 0 for r in found), name
    if not query.strip():
        assert all(found == [] for found in results.values())
    if query == "the of and a":
        assert results["bm25"] == results["graph"] == []
    if query.startswith("What is the budget"):
        assert results["fused"][0].chunk.page == 2


# --- incremental re-ingest and deletion ----------------------------------------------------------------------------


def test_a_changed_file_replaces_only_its_chunks(docs: Path, tmp_path: Path) -> None:
    garden = docs / "garden.md"
    with opened(tmp_path / "index") as (index, ingestor):
        ingestor.ingest([docs])
        others = {c.id for c in index.table if c.source != str(garden)}
        changed = GARDEN.replace("Brandywine tomatoes ripen in late", "Cherokee Purple tomatoes ripen in early")
        garden.write_text(changed)
        report = ingestor.ingest([docs])

        assert outcomes(report) == {f.file: ("replaced" if f.file == "garden.md" else "unchanged", None) for f in FACTS}
        assert report.chunks_indexed == len(ids_of(index, garden)) == 1
        assert {c.id for c in index.table if c.source != str(garden)} == others
        assert not any("Brandywine" in c.text for c in index.table)
        assert index.retrievers["bm25"].retrieve("Brandywine", 5) == []
        assert index.retrievers["graph"].retrieve("Brandywine", 5) == []
        top = index.search("When do the Cherokee Purple tomatoes ripen?", 1)[0]
        assert top.source == str(garden) and "early August" in top.text
        entities = {entity for entity, _, _ in index.knowledge.entities()}
        assert "cherokee purple" in entities and "brandywine" not in entities


def test_a_file_gone_from_the_folder_is_removed(docs: Path, tmp_path: Path) -> None:
    cable = docs / "cable.txt"
    with opened(tmp_path / "index") as (index, ingestor):
        ingestor.ingest([docs])
        gone = ids_of(index, cable)
        cable.unlink()
        report = ingestor.ingest([docs])
        assert outcomes(report)["cable.txt"] == ("removed", None)
        assert [o.chunks for o in report.outcomes if o.status == "removed"] == [len(gone)]
        assert str(cable) not in index.sources()
        assert not gone & {c.id for c in index.table}
        assert not gone & {chunk for chunk, _, _ in index.knowledge.mentions()}
        assert all(r.source != str(cable) for r in everything_found(index, CABLE, 10, SearchFilters()))


def test_delete_removes_a_file_from_every_retriever_and_the_graph(docs: Path, tmp_path: Path) -> None:
    manual = docs / "manual.docx"
    with opened(tmp_path / "index") as (index, ingestor):
        ingestor.ingest([docs])
        gone = ids_of(index, manual)
        assert gone <= {chunk for chunk, _, _ in index.knowledge.mentions()}
        assert index.retrievers["graph"].retrieve("Halvorsen", 5)[0].id in gone

        report = ingestor.delete([manual, docs / "never-ingested.md"])
        assert outcomes(report) == {
            "manual.docx": ("removed", None),
            "never-ingested.md": ("skipped", "not in the index"),
        }
        assert not gone & {c.id for c in index.table}
        for query in ("Forklifts inspected every Tuesday by the Halvorsen crew", "saffron risotto canteen Fridays"):
            found = everything_found(index, query, 10, SearchFilters())
            assert not gone & {r.id for r in found}
        assert index.retrievers["graph"].retrieve("Halvorsen", 5) == []
        assert not gone & {chunk for chunk, _, _ in index.knowledge.mentions()}
        assert "halvorsen" not in {entity for entity, _, _ in index.knowledge.entities()}
        assert index.knowledge.counts()["chunks"] == len(index)

        ingestor.delete([docs])  # a folder: every file under it
        assert len(index) == 0
        assert index.knowledge.counts() == {"chunks": 0, "entities": 0, "mentions": 0, "co_occurs": 0}
    assert len(load_index(CONFIG, tmp_path / "index", None)) == 0


# --- bad input -----------------------------------------------------------------------------------------------------

BAD_FILES = {
    "corrupt.pdf": "corrupt PDF",
    "locked.pdf": "encrypted PDF",
    "empty.pdf": "empty document",
    "noise.txt": "binary content",
    "legacy.txt": "unknown text encoding",
    "huge.txt": "file too large",
}


def write_bad_files(folder: Path) -> None:
    folder.mkdir()
    whole = write_pdf(folder / "whole.pdf", PDF_PAGES).read_bytes()
    (folder / "whole.pdf").unlink()
    (folder / "corrupt.pdf").write_bytes(whole[: len(whole) // 2])
    write_pdf(folder / "locked.pdf", ["Secret merger plans."], user_password="hunter2")
    (folder / "empty.pdf").write_bytes(b"")
    rng = random.Random(11)
    (folder / "noise.txt").write_bytes(rng.randbytes(8000))
    (folder / "legacy.txt").write_bytes(bytes(rng.randrange(0x80, 0x100) for _ in range(4000)))
    (folder / "huge.txt").write_text("A line of perfectly good text.\n" * 40_000)  # 1.2 MB > the 1 MB limit


def test_bad_files_are_skipped_with_reasons_and_nothing_indexed_is_lost(docs: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    write_bad_files(batch)
    (batch / "harbour.md").write_text("# Harbour\n\nThe harbour master of Kirkwall is Agnes Flett.\n")
    report_pdf = docs / "report.pdf"
    with opened(tmp_path / "index") as (index, ingestor):
        ingestor.ingest([docs])
        kept = {c.id for c in index.table}
        report_pdf.write_bytes(report_pdf.read_bytes()[:500])  # an indexed file turns corrupt

        report = ingestor.ingest([docs, batch, tmp_path / "nowhere" / "ghost.pdf"])
        got = outcomes(report)
        for name, reason in {**BAD_FILES, "report.pdf": "corrupt PDF", "ghost.pdf": "no such file"}.items():
            status, why = got.pop(name)
            assert status == "skipped" and why is not None and reason in why, (name, why)
        assert got == {"harbour.md": ("added", None)} | {f.file: ("unchanged", None) for f in FACTS[1:]}
        assert kept < {c.id for c in index.table}
        assert "Agnes Flett" in index.search("Who is the harbour master of Kirkwall?", 1)[0].text
        assert index.search("What is the Zephyr project budget?", 1)[0].source == str(report_pdf)
    assert kept < {c.id for c in load_index(CONFIG, tmp_path / "index", None).table}


# --- tenants, ACLs, filters ----------------------------------------------------------------------------------------

PLACES = ["Vale Farm", "Mill Orchard", "Hatton Grange", "Redbrook"]


class Tenants(NamedTuple):
    index: HybridIndex
    a: set[str]
    b: set[str]
    hr: set[str]
    reports: Path
    vocabulary: list[str]


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    """Tenants a and b write about the same things; a's texts are shorter and denser, so they outrank b's."""
    root = tmp_path_factory.mktemp("tenants")
    (root / "a").mkdir()
    (root / "b" / "reports").mkdir(parents=True)
    (root / "hr").mkdir()
    texts = [(root / "hr" / "pay.txt", "Apple pickers at Vale Farm earn 31 euros per hour this harvest.")]
    for i in range(8):
        text = f"Granny Smith apple harvest at {PLACES[i % 4]}: {i + 3} crates."
        texts.append((root / "a" / f"crop-{i}.txt", text))
    for i in range(6):
        text = f"Orchard log {i}. Our apple harvest at {PLACES[i % 4]} filled {i + 20} crates of Granny Smith fruit, "
        texts.append((root / "b" / f"log-{i}.txt", text + "picked by the morning team before the rain came."))
    for i in range(4):
        text = f"# Season {i}\n\nThe apple harvest report for {PLACES[i]}: Granny Smith crates were weighed."
        texts.append((root / "b" / "reports" / f"season-{i}.md", text))
    for path, text in texts:
        path.write_text(text)
    with opened(root / "index") as (index, ingestor):
        ingestor.ingest([root / "a"], tenant="a")
        ingestor.ingest([root / "b"], tenant="b")
        ingestor.ingest([root / "hr"], tenant="b", acl=["hr"])
        by_tenant = {t: {c.id for c in index.table if c.tenant == t} for t in ("a", "b")}
        hr = {c.id for c in index.table if c.acl}
        vocabulary = sorted({w for _, text in texts for w in re.findall(r"\w+", text)})
        yield Tenants(index, by_tenant["a"], by_tenant["b"] - hr, hr, root / "b" / "reports", vocabulary)


def test_no_chunk_of_one_tenant_ever_reaches_another(tenants: Tenants) -> None:
    index = tenants.index
    sentences = [f"{place} apple harvest Granny Smith crates" for place in PLACES] + ["How much do pickers earn?"]
    callers = [
        (SearchFilters(tenant="a"), tenants.a),
        (SearchFilters(tenant="b"), tenants.b),
        (SearchFilters(tenant="b", acl=frozenset({"finance"})), tenants.b),
    ]
    # BM25 and the graph walk depend on which words a query has: every word of the corpus, for every caller.
    queries = [*tenants.vocabulary, *sentences]
    assert len(queries) > 60
    hits = 0
    for query in queries:
        for filters, own in callers:
            for name in ("bm25", "graph"):
                found = {r.id for r in index.retrievers[name].retrieve(query, 10, filters)}
                assert found <= own, (filters, name, query)
                hits += len(found)
        assert everything_found(index, query, 10, SearchFilters(), retrievers=("bm25", "graph")) == []
    assert hits > 10 * len(queries)
    # Dense scores every row whatever the query; each query costs an embedding, so fewer of them.
    for query in [*sentences, *tenants.vocabulary[::12]]:
        for filters, own in callers[:2]:
            found = index.search(query, 10, filters) + index.retrievers["dense"].retrieve(query, 10, filters)
            assert {r.id for r in found} <= own, (filters, query)
            assert found


def test_filters_apply_before_top_k(tenants: Tenants) -> None:
    index, k = tenants.index, 5
    query = "Granny Smith apple harvest crates"
    # Premise: over all rows, the best BM25 matches are tenant a's — a post-filter would leave b short.
    best = [index.table.chunks[r].id for r in index.bm25.scores(query).argsort()[::-1][:k]]
    assert set(best) <= tenants.a
    b = SearchFilters(tenant="b")
    assert len(index.search(query, k, b)) == k
    for name in RETRIEVERS:
        found = index.retrievers[name].retrieve(query, k, b)
        assert len(found) == k and {r.id for r in found} <= tenants.b, name
    reports = SearchFilters(tenant="b", sources=(str(tenants.reports),))
    markdown = SearchFilters(tenant="b", metadata={"type": "md"})
    for filters in (reports, markdown):
        assert len(index.search(query, 3, filters)) == 3
        for found in (index.search(query, 3, filters), *index.retrieve_each(query, 3, filters).values()):
            assert len(found) == 3 and all(r.source.startswith(str(tenants.reports)) for r in found)


def test_acl_tagged_chunks_are_visible_only_to_their_group(tenants: Tenants) -> None:
    query = "How much do apple pickers at Vale Farm earn per hour?"
    for groups in (None, frozenset(), frozenset({"finance"})):
        assert not tenants.hr & {r.id for r in everything_found(tenants.index, query, 25, SearchFilters("b", groups))}
    top = tenants.index.search(query, 1, SearchFilters(tenant="b", acl=frozenset({"hr", "finance"})))[0]
    assert top.id in tenants.hr and "31 euros" in top.text
    other_tenant = SearchFilters(tenant="a", acl=frozenset({"hr"}))
    assert not tenants.hr & {r.id for r in everything_found(tenants.index, query, 25, other_tenant)}


def test_reingesting_with_another_acl_retags_the_chunks(tmp_path: Path) -> None:
    memo = tmp_path / "memo.txt"
    memo.write_text("The Zephyr layoffs are planned for October.")
    with opened(tmp_path / "index") as (index, ingestor):
        ingestor.ingest([memo])
        report = ingestor.ingest([memo], acl=["hr"])
        assert outcomes(report) == {"memo.txt": ("replaced", None)}
        assert [c.acl for c in index.table] == [("hr",)]
        assert index.search("Zephyr layoffs", 3) == []
        assert index.search("Zephyr layoffs", 3, SearchFilters(acl=frozenset({"hr"})))[0].source == str(memo)
        assert outcomes(ingestor.ingest([memo], acl=["hr"])) == {"memo.txt": ("unchanged", None)}
        assert index.knowledge.counts()["chunks"] == len(index) == 1


# --- persistence ---------------------------------------------------------------------------------------------------


def test_the_index_reloads_identically_after_a_restart(library: Path, built: Built, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    with opened(index_dir) as (index, ingestor):
        ingestor.ingest([library])
        before, counts = snapshot(index), index.knowledge.counts()
        assert [c.id for c in index.table] == [c.id for c in built.index.table]  # ids are stable across ingests
    with opened(index_dir) as (index, _):
        assert snapshot(index) == before
        assert index.knowledge.counts() == counts
    assert snapshot(load_index(CONFIG, index_dir, None)) == before


def test_a_crash_leaves_the_last_complete_version_live(library: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    with opened(index_dir) as (index, ingestor):
        ingestor.ingest([library])
        before, size = snapshot(index), len(index)
        # a crash after the knowledge graph took a document's chunks but before the index was saved
        ingestor.add_document("draft", [Section("Draft: the Osprey project starts in May.")], source="draft")
        ingestor.flush()
        unsaved = ids_of(index, Path("draft"))
        assert unsaved and unsaved <= {chunk for chunk, _, _ in index.knowledge.mentions()}
    live = (index_dir / "CURRENT").read_text().strip()
    newer = index_dir / f"v{int(live[1:]) + 1:06d}"  # a save that died half-way: chunks written, nothing else
    newer.mkdir()
    (newer / "chunks.jsonl").write_text((index_dir / live / "chunks.jsonl").read_text().splitlines()[0] + "\n")
    (index_dir / "CURRENT.tmp").write_text(newer.name)

    assert snapshot(load_index(CONFIG, index_dir, None)) == before
    late = tmp_path / "late.md"
    late.write_text("# Late\n\nThe Osprey project starts in June.\n")
    with opened(index_dir) as (index, ingestor):
        assert len(index) == size and snapshot(index) == before
        assert index.knowledge.counts()["chunks"] == size  # the graph dropped what the index never saved
        assert not unsaved & {chunk for chunk, _, _ in index.knowledge.mentions()}
        ingestor.ingest([late])
    assert sorted(p.name for p in index_dir.glob("v*")) == [(index_dir / "CURRENT").read_text().strip()]
    reloaded = load_index(CONFIG, index_dir, None)
    assert len(reloaded) == size + 1
    assert reloaded.search("When does the Osprey project start?", 1)[0].source == str(late)


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def chimera(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEO4J_URI"}  # the embedded graph store, always
    return subprocess.run(
        [sys.executable, "-m", "chimera.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT, env=env,
    )  # fmt: skip


def test_cli_ingest_search_and_delete(cli_config: Path, docs: Path, tmp_path: Path) -> None:
    done = chimera(cli_config, "ingest", str(docs))
    assert done.returncode == 0, done.stderr
    *lines, summary = done.stdout.splitlines()
    added = [re.fullmatch(r"    added  (\S+)  \((\d+) chunks\)", line) for line in lines]
    assert sorted(Path(m.group(1)).name for m in added if m) == sorted(f.file for f in FACTS)
    total = sum(int(m.group(2)) for m in added if m)
    assert summary.startswith(f"5 added, 0 replaced, 0 unchanged, 0 removed, 0 skipped; {total} chunks in ")

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n garbage")
    done = chimera(cli_config, "ingest", str(broken), str(docs))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"  skipped  {broken}  (corrupt PDF")
    assert done.stdout.splitlines()[-1].startswith("0 added, 0 replaced, 5 unchanged, 0 removed, 1 skipped")

    done = chimera(cli_config, "search", "What is the Zephyr project budget?", "-k", "2")
    assert done.returncode == 0, done.stderr
    first, text = done.stdout.splitlines()[:2]
    assert re.fullmatch(rf"\[1\] \d\.\d{{4}}  {re.escape(str(docs / 'report.pdf'))}, page 2", first)
    assert "4.2 million euros" in text
    done = chimera(cli_config, "search", "Halvorsen forklifts", "--retriever", "bm25")
    assert done.stdout.splitlines()[0].endswith(f"{docs / 'manual.docx'}  (Operations Manual > Safety)")

    index_dir = load_config(cli_config).index_dir
    pdf_ids = ids_of(load_index(CONFIG, index_dir, None), docs / "report.pdf")
    done = chimera(cli_config, "ingest", "--delete", str(docs / "report.pdf"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"  removed  {docs / 'report.pdf'}  (3 chunks)"
    done = chimera(cli_config, "search", "Zephyr", "--retriever", "bm25")
    assert (done.returncode, done.stdout) == (0, "no results\n")
    with opened(index_dir) as (index, _):
        assert not pdf_ids & {chunk for chunk, _, _ in index.knowledge.mentions()}
        assert index.knowledge.counts()["chunks"] == len(index) == total - len(pdf_ids)


# fmt: off
TOWNS = ["Arden", "Brisa", "Caldor", "Dunmore", "Elsfield", "Farrow", "Glenarm", "Holbeck", "Ilsway", "Jarrow",
         "Kelso", "Lowick", "Marden", "Netley", "Oxwich", "Pelham", "Quarley", "Rowsley", "Selby", "Tarbet",
         "Ulcombe", "Venn", "Wolsty", "Yarcombe", "Zennor", "Alnmouth", "Bampton", "Cromer", "Dornoch", "Eyam"]
CRAFTS = ["glassblowing", "cheese", "lace", "pottery", "cider", "kites", "violins", "clocks", "honey", "rope",
          "saddles", "bells", "baskets", "candles", "tapestry", "mustard", "gin", "wool", "oysters", "slate",
          "paper", "pewter", "hats", "boats", "tiles", "bread", "soap", "ink", "perfume", "marble"]
# fmt: on


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, (town, craft) in enumerate(zip(TOWNS, CRAFTS, strict=True)):
            text = f"{town} is a market town known for its {craft}. Visitors come every summer to see the workshops."
            f.write(json.dumps({"_id": f"d{i}", "title": town, "text": text}) + "\n")
    judged = range(0, 30, 5)
    with (folder / "queries.jsonl").open("w") as f:
        for i in [*judged, 1]:  # q1 has no judgement: dropped
            f.write(json.dumps({"_id": f"q{i}", "text": f"Which town is famous for its {CRAFTS[i]}?"}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"q{i}\td{i}\t1" for i in judged)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_cli_eval_retrieval_on_a_small_beir_folder(cli_config: Path, tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "towns")
    out = tmp_path / "report" / "out.json"
    done = chimera(cli_config, "eval", "retrieval", "--beir", str(beir), "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "nDCG@10" in done.stdout and f"written to {out}" in done.stdout
    report = json.loads(out.read_text())
    assert (report["dataset"], report["queries"], report["documents"]) == ("towns", 6, 30)
    for name in ("bm25", "dense", "graph", "fused"):
        metrics = report["retrievers"][name]
        assert set(metrics) >= {"ndcg@10", "recall@5", "recall@20", "mrr"}, name
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values()), name
    assert report["retrievers"]["bm25"]["mrr"] == report["retrievers"]["fused"]["recall@5"] == 1.0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["ingest_chunks_per_s"] > 0


def _bad_json(beir: Path) -> str:
    lines = (beir / "queries.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "q10", "text": '
    (beir / "queries.jsonl").write_text("\n".join(lines) + "\n")
    return f"{beir / 'queries.jsonl'}:3"


def _two_columns(beir: Path) -> str:
    with (beir / "qrels" / "test.tsv").open("a") as f:
        f.write("q5\td5\n")
    return f"{beir / 'qrels' / 'test.tsv'}:8"


def _missing_queries(beir: Path) -> str:
    (beir / "queries.jsonl").unlink()
    return "queries.jsonl is missing"


def _bad_corpus_line(beir: Path) -> str:
    with (beir / "corpus.jsonl").open("a") as f:
        f.write('{"title": "no id"}\n')
    return f"{beir / 'corpus.jsonl'}:31"


@pytest.mark.parametrize("damage", [_bad_json, _two_columns, _missing_queries, _bad_corpus_line])
def test_cli_eval_names_the_bad_line_of_a_malformed_folder(
    cli_config: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    beir = write_beir(tmp_path / "towns")
    where = damage(beir)
    done = chimera(cli_config, "eval", "retrieval", "--beir", str(beir))
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.splitlines()[-1]  # after the progress bars, if the corpus was being read
    assert last.startswith("chimera: ") and where in last, done.stderr
