"""DOCX text with python-docx: body paragraphs and tables in order, grouped under their headings."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.tools.ingest._text import SectionBuilder
from chimera.tools.ingest.parsers import ParseError
from chimera.tools.search.types import Section

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

_HEADING_STYLE = re.compile(r"Heading ([1-9])")
_MAX_TABLE_DEPTH = 8


def _heading_level(paragraph: Paragraph) -> int | None:
    """0 for the document title, N for "Heading N", None for body text."""
    style = paragraph.style
    name = style.name if style is not None else None
    if name == "Title":
        return 0
    if name and (match := _HEADING_STYLE.fullmatch(name)):
        return int(match.group(1))
    return None


def _table_text(table: Table, depth: int = 0) -> str:
    """A table as lines of ` | `-separated cells; a merged cell is written once, nested tables inline."""
    from docx.table import Table

    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell comes back once per grid column it spans, each time wrapping one element.
            if cell._tc is previous:
                continue
            previous = cell._tc
            parts: list[str] = []
            for block in cell.iter_inner_content():
                if isinstance(block, Table):
                    if depth < _MAX_TABLE_DEPTH:
                        parts.append(_table_text(block, depth + 1))
                elif text := block.text.strip():
                    parts.append(text)
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def parse_docx(path: Path) -> Iterator[Section]:
    """One section per heading block: the paragraphs and tables between one heading and the next.

    "Title" and "Heading N" paragraph styles open headings; body text before any heading has an empty path.

    Args:
        path: the .docx file.

    Yields:
        Sections in document order.

    Raises:
        ParseError: the file is not a readable Word document.
    """
    from docx import Document
    from docx.opc.exceptions import OpcError
    from docx.text.paragraph import Paragraph
    from lxml.etree import XMLSyntaxError

    try:
        document = Document(str(path))
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError, XMLSyntaxError) as e:
        raise ParseError(f"corrupt DOCX: {e}") from e
    builder = SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            level = _heading_level(block)
            if level is None:
                builder.paragraph(block.text)
            else:
                builder.heading(level, block.text)
        else:
            builder.paragraph(_table_text(block))
        yield from builder.drain()
    builder.close()
    yield from builder.drain()
