"""Parsing and chunking on real files: PDFs from fpdf2, DOCX from python-docx, HTML, Markdown and encoded text."""

from __future__ import annotations

import itertools
import random
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from chimera.tools.ingest.chunking import Chunker, WordPieceCounter, wordpiece_counter
from chimera.tools.ingest.parsers import SUPPORTED_SUFFIXES, ParseError, is_supported, parse
from chimera.tools.search.types import Section

pytestmark = pytest.mark.unit

MB = 1_000_000


@pytest.fixture(scope="module")
def counter() -> WordPieceCounter:
    return wordpiece_counter()


def _pdf(path: Path, pages: list[str], *, user_password: str | None = None, owner_password: str = "") -> Path:
    pdf = FPDF()
    if user_password is not None or owner_password:
        pdf.set_encryption(owner_password=owner_password or "owner", user_password=user_password)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


# --- PDF ---------------------------------------------------------------------------------------------------------


def test_pdf_gives_one_section_per_page_in_order(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "three.pdf", [f"Page {n} is about topic {n}." for n in (1, 2, 3)])
    sections = list(parse(path))
    assert [s.page for s in sections] == [1, 2, 3]
    assert [s.text for s in sections] == [f"Page {n} is about topic {n}." for n in (1, 2, 3)]
    assert all(s.heading_path == () for s in sections)


def test_pdf_with_user_password_is_refused(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "locked.pdf", ["Secret plans."], user_password="hunter2")
    with pytest.raises(ParseError, match="encrypted PDF"):
        list(parse(path))


def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "owner-only.pdf", ["Readable by anyone."], owner_password="boss")
    assert [s.text for s in parse(path)] == ["Readable by anyone."]


def test_truncated_pdf_is_corrupt(tmp_path: Path) -> None:
    whole = _pdf(tmp_path / "whole.pdf", ["Some text.", "More text."]).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ParseError, match="corrupt PDF"):
        list(parse(path))


def test_empty_pdf_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(ParseError, match="empty document"):
        parse(path)


def test_pdf_without_text_is_an_empty_document(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "blank.pdf", [""])
    with pytest.raises(ParseError, match="empty document"):
        list(parse(path))


# --- DOCX, HTML, Markdown ----------------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Annual Report", level=0)
    document.add_paragraph("Summary of the year.")
    document.add_heading("Revenue", level=1)
    document.add_paragraph("Revenue grew by a tenth.")
    document.add_paragraph("Most of it came in autumn.")
    document.add_heading("By region", level=2)
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Region", (0, 1): "Sales", (1, 0): "Europe", (1, 1): "120"}.items():
        table.cell(row, col).text = text
    document.add_heading("Costs", level=1)
    document.add_paragraph("Costs fell.")
    path = tmp_path / "report.docx"
    document.save(str(path))

    sections = list(parse(path))
    assert [(s.heading_path, s.text) for s in sections] == [
        (("Annual Report",), "Summary of the year."),
        (("Annual Report", "Revenue"), "Revenue grew by a tenth.\n\nMost of it came in autumn."),
        (("Annual Report", "Revenue", "By region"), "Region | Sales\nEurope | 120"),
        (("Annual Report", "Costs"), "Costs fell."),
    ]


def test_corrupt_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ParseError, match="corrupt DOCX"):
        list(parse(path))


HTML = """<!doctype html><html><head><title>Site title</title><style>body { color: red }</style></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<script>var secretToken = "do-not-index";</script>
<h1>Guide</h1><p>Welcome   to the
  <b>guide</b>.</p>
<h2>Install</h2><ul><li>Download it.</li><li>Run it.</li></ul>
<h2>Use</h2><p>Call it.</p><table><tr><th>Flag</th><th>Meaning</th></tr><tr><td>-v</td><td>verbose</td></tr></table>
<footer>Copyright nobody</footer></body></html>"""


def test_html_headings_and_dropped_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML, encoding="utf-8")
    sections = list(parse(path))
    assert [(s.heading_path, s.text) for s in sections] == [
        (("Guide",), "Welcome to the guide."),
        (("Guide", "Install"), "Download it.\nRun it."),
        (("Guide", "Use"), "Call it.\n\nFlag | Meaning\n-v | verbose"),
    ]
    everything = " ".join(s.text for s in sections)
    for dropped in ("secretToken", "color: red", "Home", "Copyright", "Site title"):
        assert dropped not in everything


def test_html_title_is_the_top_heading_without_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<html><head><title>Manual</title></head><body><h2>Part</h2><p>Text.</p></body></html>")
    assert [(s.heading_path, s.text) for s in parse(path)] == [(("Manual", "Part"), "Text.")]


MARKDOWN = """# Guide

Intro  text\u200b here.

## Install

Run this:

```bash
# not a heading
pip install thing
```

### Details
Deep text.

## Use ##
Use it.

# Appendix
Last words.
"""


def test_markdown_nested_headings_and_code_fence(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    assert [(s.heading_path, s.text) for s in parse(path)] == [
        (("Guide",), "Intro text here."),
        (("Guide", "Install"), "Run this:\n\n```bash\n# not a heading\npip install thing\n```"),
        (("Guide", "Install", "Details"), "Deep text."),
        (("Guide", "Use"), "Use it."),
        (("Appendix",), "Last words."),
    ]


# --- plain text: encodings, binary, size ---------------------------------------------------------------------------


def test_latin1_text_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Café crème brûlée, naïve façade, déjà vu.\n\nÀ bientôt, garçon!".encode("latin-1"))
    assert [s.text for s in parse(path)] == ["Café crème brûlée, naïve façade, déjà vu.\n\nÀ bientôt, garçon!"]


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Grüße aus Köln.\n\n日本語のテキスト".encode("utf-16"))
    assert [s.text for s in parse(path)] == ["Grüße aus Köln.\n\n日本語のテキスト"]


def test_random_bytes_are_binary(tmp_path: Path) -> None:
    path = tmp_path / "noise.txt"
    path.write_bytes(random.Random(7).randbytes(20_000))
    with pytest.raises(ParseError, match="binary"):
        list(parse(path))


def test_whitespace_only_text_is_an_empty_document(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text("  \n\n\t\n\u200b\n")
    with pytest.raises(ParseError, match="empty document"):
        list(parse(path))


def test_50mb_text_parses_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    body = "The quick brown fox jumps over the lazy dog by the river. " * 5
    paragraphs = 0
    with path.open("w", encoding="utf-8") as fh:
        while fh.tell() < 50 * MB:
            fh.write(f"Paragraph {paragraphs}. {body}\n\n")
            paragraphs += 1

    tracemalloc.start()
    try:
        seen = sections = 0
        for section in parse(path):
            sections += 1
            seen += section.text.count("Paragraph ")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == paragraphs
    assert sections > 1
    assert peak < 20 * MB, f"peak {peak / MB:.1f} MB"

    with pytest.raises(ParseError, match=r"file too large \(50\.\d MB > 10\.0 MB limit\)"):
        parse(path, max_bytes=10 * MB)


def test_missing_and_unsupported_files_are_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no such file"):
        parse(tmp_path / "missing.pdf")
    odd = tmp_path / "data.xyz"
    odd.write_text("hello")
    with pytest.raises(ParseError, match=r"unsupported file type \.xyz"):
        parse(odd)
    assert is_supported("a/B.PDF") and is_supported("notes.rst") and not is_supported(odd)
    assert {".pdf", ".docx", ".html", ".md", ".txt", ".json"} <= SUPPORTED_SUFFIXES


# --- chunking -------------------------------------------------------------------------------------------------------

LONG_PARAGRAPH = " ".join(
    f"Sentence {n} describes how the pipeline handles documents of kind {n} with care." for n in range(60)
)


def _words(text: str) -> list[str]:
    return text.split()


def _shared_edge(left: str, right: str) -> int:
    """How many words end `left` and start `right`."""
    a, b = _words(left), _words(right)
    return max((k for k in range(1, min(len(a), len(b)) + 1) if a[-k:] == b[:k]), default=0)


def test_chunks_never_exceed_max_tokens(counter: WordPieceCounter) -> None:
    sections = [
        Section("Short intro.\n\nAnother short one.", 1, ("A",)),
        Section(LONG_PARAGRAPH, 1, ("A",)),
        Section(" ".join(["unpunctuated"] * 700), 2, ("B",)),
        Section("x" * 20_000 + " tail", 3, ("C",)),
        Section("\n".join(f"line {n}: value = {n * n}" for n in range(400)), 4, ("D",)),
    ]
    chunker = Chunker(counter, max_tokens=64, overlap_tokens=12)
    chunks = list(chunker.chunk(sections))
    assert len(chunks) > 10
    assert max(counter(c.text) for c in chunks) <= 64
    assert all(c.text.strip() == c.text and c.text for c in chunks)


def test_pieces_of_a_long_paragraph_overlap(counter: WordPieceCounter) -> None:
    chunker = Chunker(counter, max_tokens=60, overlap_tokens=16)
    pieces = [c.text for c in chunker.chunk([Section(LONG_PARAGRAPH)])]
    assert len(pieces) > 5
    for left, right in itertools.pairwise(pieces):
        shared = _shared_edge(left, right)
        assert shared > 0
        assert 0 < counter(" ".join(_words(right)[:shared])) <= 16
    # Nothing is lost: every sentence of the paragraph is in some piece.
    assert all(f"Sentence {n} " in " ".join(pieces) for n in range(60))


def test_overlap_falls_back_to_words_inside_one_sentence(counter: WordPieceCounter) -> None:
    chunker = Chunker(counter, max_tokens=50, overlap_tokens=8)
    pieces = [c.text for c in chunker.chunk([Section(" ".join(f"w{n}" for n in range(300)))])]
    assert all(_shared_edge(a, b) > 0 for a, b in itertools.pairwise(pieces))
    assert max(counter(p) for p in pieces) <= 50


def test_chunks_never_span_pages_or_headings(counter: WordPieceCounter) -> None:
    sections = [
        Section("alpha one.\n\nalpha two.", 1, ("Intro",)),
        Section("beta one.", 2, ("Intro",)),
        Section("gamma one.", 2, ("Intro", "Detail")),
        Section("gamma two.", 2, ("Intro", "Detail")),
        Section("delta one.", 2, ("Other",)),
    ]
    chunks = list(Chunker(counter, max_tokens=200).chunk(sections))
    assert [(c.page, c.heading_path, c.text) for c in chunks] == [
        (1, ("Intro",), "alpha one.\n\nalpha two."),
        (2, ("Intro",), "beta one."),
        (2, ("Intro", "Detail"), "gamma one.\n\ngamma two."),
        (2, ("Other",), "delta one."),
    ]


def test_small_paragraphs_are_packed_up_to_the_limit(counter: WordPieceCounter) -> None:
    paragraphs = [f"Point {n} is short and sweet." for n in range(40)]
    chunks = list(Chunker(counter, max_tokens=40, overlap_tokens=0).chunk([Section("\n\n".join(paragraphs), 5)]))
    assert 1 < len(chunks) < len(paragraphs)
    assert all(counter(c.text) <= 40 and c.page == 5 for c in chunks)
    assert [p for c in chunks for p in c.text.split("\n\n")] == paragraphs
    # Packed greedily: no chunk could have taken the next chunk's first paragraph.
    for chunk, following in itertools.pairwise(chunks):
        assert counter(chunk.text) + counter(following.text.split("\n\n")[0]) > 40


@pytest.mark.parametrize("count", [lambda text: len(text.split()), len], ids=["words", "characters"])
def test_plain_callable_counters_hold_the_limit(count: Callable[[str], int]) -> None:
    text = "\n\n".join([LONG_PARAGRAPH, *(f"tiny {n}" for n in range(30))])
    chunks = list(Chunker(count, max_tokens=50, overlap_tokens=10).chunk([Section(text)]))
    assert chunks and max(count(c.text) for c in chunks) <= 50
    assert re.search(r"tiny 29$", chunks[-1].text)


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(10, 10), (10, 20), (0, 0), (10, -1)])
def test_bad_arguments(max_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError):
        Chunker(len, max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def test_wordpiece_counter_counts_without_special_tokens(counter: WordPieceCounter, tmp_path: Path) -> None:
    assert counter("hello world") == 2
    long_text = "token " * 1000
    assert counter(long_text) == 1000  # no truncation at the model's 128/256
    assert counter.count_many(["hello world", "", long_text]) == [2, 0, 1000]
    with pytest.raises(FileNotFoundError):
        wordpiece_counter(tmp_path)
