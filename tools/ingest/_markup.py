"""HTML (BeautifulSoup, the built-in parser) and Markdown (ATX headings, fenced code) as heading blocks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.tools.ingest._text import SectionBuilder, iter_text_blocks
from chimera.tools.search.types import Section

if TYPE_CHECKING:
    from bs4 import Tag

_DROPPED_TAGS = frozenset({"script", "style", "nav", "footer", "noscript", "template", "head", "svg", "iframe"})
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "details", "div", "dl",
        "fieldset", "figcaption", "figure", "form", "header", "hr", "main", "ol", "p", "section", "summary", "table",
        "ul",
    }
)  # fmt: skip
# Rows and list items are lines of one paragraph, so that a table or a list stays together.
_LINE_TAGS = frozenset({"dd", "dt", "li", "tr"})
_CELL_TAGS = frozenset({"td", "th"})

_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class _Close:
    """Marks, on the walk stack, the end of an element that breaks a paragraph or a line."""


_CLOSE_PARAGRAPH = _Close()
_CLOSE_LINE = _Close()


class _HtmlText:
    """Inline text of the current paragraph, as lines; whitespace inside a line collapses as a browser would."""

    def __init__(self, builder: SectionBuilder) -> None:
        self.builder = builder
        self.lines: list[str] = []
        self.parts: list[str] = []

    def line_break(self) -> None:
        if line := " ".join("".join(self.parts).split()):
            self.lines.append(line)
        self.parts.clear()

    def paragraph_break(self) -> None:
        self.line_break()
        self.builder.paragraph("\n".join(self.lines))
        self.lines.clear()


def _walk_html(root: Tag, out: _HtmlText) -> Iterator[Section]:
    """Walk the tree in document order with an explicit stack: deep nesting cannot exhaust the recursion limit."""
    from bs4 import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    stack: list[object] = list(reversed(root.contents))
    while stack:
        node = stack.pop()
        if node is _CLOSE_PARAGRAPH:
            out.paragraph_break()
        elif node is _CLOSE_LINE:
            out.line_break()
        elif isinstance(node, NavigableString):
            if not isinstance(node, Comment | Declaration | Doctype | ProcessingInstruction):
                out.parts.append(str(node))
        elif isinstance(node, Tag) and node.name not in _DROPPED_TAGS:
            name = node.name
            if name in _HEADING_TAGS:
                out.paragraph_break()
                out.builder.heading(_HEADING_TAGS[name], node.get_text(" "))
            elif name == "br":
                out.line_break()
            elif name == "pre":
                out.paragraph_break()
                out.builder.paragraph(node.get_text())
            else:
                if name in _CELL_TAGS and "".join(out.parts).strip():
                    out.parts.append(" | ")
                if name in _BLOCK_TAGS:
                    out.paragraph_break()
                    stack.append(_CLOSE_PARAGRAPH)
                elif name in _LINE_TAGS:
                    out.line_break()
                    stack.append(_CLOSE_LINE)
                stack.extend(reversed(node.contents))
        yield from out.builder.drain()


def parse_html(path: Path) -> Iterator[Section]:
    """One section per heading block; h1–h6 open headings, the page `<title>` is the top one when there is no h1.

    Scripts, styles, navigation and footers are dropped. The encoding comes from a BOM, a `<meta charset>`, or
    detection (BeautifulSoup's).

    Args:
        path: the .html/.htm file (already checked against the size limit).

    Yields:
        Sections in document order.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    builder = SectionBuilder()
    if soup.find("h1") is None and soup.title is not None:
        builder.heading(1, soup.title.get_text(" "))
    out = _HtmlText(builder)
    yield from _walk_html(soup, out)
    out.paragraph_break()
    builder.close()
    yield from builder.drain()


def _markdown_lines(path: Path) -> Iterator[str]:
    """The file's lines, read in bounded blocks; a line cut by a block boundary is rejoined."""
    pending = ""
    for block in iter_text_blocks(path):
        lines = (pending + block).split("\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def parse_markdown(path: Path) -> Iterator[Section]:
    """One section per heading block; ATX headings (`#` to `######`) open headings.

    Fenced code (``` or ~~~) is kept verbatim as text, and a `#` inside it is not a heading. Setext (underlined)
    headings are read as ordinary text.

    Args:
        path: the .md/.markdown file.

    Yields:
        Sections in document order.
    """
    builder = SectionBuilder()
    paragraph: list[str] = []
    fence = ""
    for line in _markdown_lines(path):
        if fence:
            paragraph.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
                builder.paragraph("\n".join(paragraph))
                paragraph.clear()
            continue
        fence_match = _FENCE.match(line)
        heading_match = None if fence_match else _ATX_HEADING.fullmatch(line)
        if fence_match or heading_match or not line.strip():
            builder.paragraph("\n".join(paragraph))
            paragraph.clear()
        if fence_match:
            fence = fence_match.group(1)
            paragraph.append(line)
        elif heading_match:
            builder.heading(len(heading_match.group(1)), heading_match.group(2) or "")
        elif line.strip():
            paragraph.append(line)
        yield from builder.drain()
    builder.paragraph("\n".join(paragraph))
    builder.close()
    yield from builder.drain()
