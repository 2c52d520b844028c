"""Document parsers: a file in, its text out as `Section`s in document order.

`parse` checks what it can up front (the file exists, its type is known, its size is within the limit) and raises
at once; what only reading reveals (encryption, corruption, binary bytes, no text at all) is raised while
iterating. The format readers live in private modules, imported when a file of their kind comes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.tools.search.types import Section

DEFAULT_MAX_BYTES = 64 << 20
"""The largest file `parse` accepts unless told otherwise (64 MiB)."""

TEXT_SUFFIXES = frozenset({".txt", ".text", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".log", ".xml", ".yaml", ".yml"})
"""Suffixes read as plain text, with encoding detection."""

SUPPORTED_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".htm", ".md", ".markdown"}) | TEXT_SUFFIXES
"""Every suffix `parse` reads, lower case, with the dot."""


class ParseError(ChimeraError):
    """A document could not be turned into text; the message says why, in words meant for a person."""


def is_supported(path: Path | str) -> bool:
    """Whether `parse` reads files of this kind, judged by the suffix alone.

    Args:
        path: a file path; it need not exist.

    Returns:
        True if the suffix (any case) is in `SUPPORTED_SUFFIXES`.
    """
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def parse(path: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Section]:
    """Read a document as sections of text, lazily, in document order.

    PDFs give one section per page (`page` is 1-based); DOCX, HTML and Markdown give one per heading block, with
    `heading_path` from the headings; plain text gives blocks of about 1 MiB cut at paragraph breaks. Whitespace
    is normalised and paragraph breaks (blank lines) are kept.

    Args:
        path: the file to read.
        max_bytes: refuse files bigger than this.

    Returns:
        An iterator of non-empty sections.

    Raises:
        ParseError: at once when the file is missing, too large, empty or of an unsupported type; while iterating
            when it is encrypted, corrupt, binary, in an unknown encoding, or holds no text.
        ValueError: `max_bytes` is not positive.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise ParseError(f"no such file: {path}") from e
    except OSError as e:
        raise ParseError(f"cannot read {path}: {e.strerror or e}") from e
    if not path.is_file():
        raise ParseError(f"not a regular file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ParseError(f"unsupported file type {suffix or '(no suffix)'}")
    if size > max_bytes:
        raise ParseError(f"file too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit)")
    if size == 0:
        raise ParseError("empty document (no text)")
    return _checked(path, _reader_for(suffix))


def _reader_for(suffix: str) -> Callable[[Path], Iterator[Section]]:
    if suffix == ".pdf":
        from chimera.tools.ingest._pdf import parse_pdf

        return parse_pdf
    if suffix == ".docx":
        from chimera.tools.ingest._docx import parse_docx

        return parse_docx
    if suffix in (".html", ".htm"):
        from chimera.tools.ingest._markup import parse_html

        return parse_html
    if suffix in (".md", ".markdown"):
        from chimera.tools.ingest._markup import parse_markdown

        return parse_markdown
    from chimera.tools.ingest._text import parse_text

    return parse_text


def _checked(path: Path, read: Callable[[Path], Iterator[Section]]) -> Iterator[Section]:
    """Run a format reader: turn read failures into ParseError and a document without text into one too."""
    found = False
    try:
        for section in read(path):
            if section.text:
                found = True
                yield section
    except OSError as e:
        raise ParseError(f"cannot read {path.name}: {e.strerror or e}") from e
    if not found:
        raise ParseError("empty document (no text)")
