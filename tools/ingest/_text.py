"""Plain text for the parsers: whitespace normalisation, encoding detection and bounded block reading."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from chimera.tools.ingest.parsers import ParseError
from chimera.tools.search.types import Section

BLOCK_BYTES = 1 << 20
"""How much of a text file is read at a time."""

_SAMPLE_BYTES = 1 << 20
_MAX_CARRY_CHARS = 4 * BLOCK_BYTES
_CONTROL_SHARE_LIMIT = 0.10
_TIE_BREAK = ("cp1252", "iso8859_15", "latin_1")

# Longest first: the UTF-32 LE BOM starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_SPACES = "\x0b\x0c\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_TIDY: dict[int, str | None] = {ord("\t"): "    ", **dict.fromkeys(map(ord, _SPACES), " ")}
_TIDY.update(dict.fromkeys(map(ord, _ZERO_WIDTH)))
_SPACE_RUN = re.compile("  +")
_TRAILING_SPACE = re.compile(" +\n")
_BLANK_RUN = re.compile(r"\n{3,}")
# C0 controls other than tab/newline/CR/FF/VT, DEL, and the C1 block: what binary decoded as a 1-byte charset shows.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def normalise(text: str) -> str:
    """Tidy whitespace without losing structure.

    Drops zero-width characters and soft hyphens, turns CR/CRLF into LF and odd spaces (NBSP, tabs) into spaces,
    collapses runs of spaces inside a line (leading indentation stays, for code; a tab is four spaces), strips
    trailing spaces, and squeezes three or more newlines into one blank line, the paragraph break the chunker
    splits on.

    Args:
        text: raw text from a parser.

    Returns:
        The tidied text, stripped at both ends.
    """
    # Plain substring tests first: most blocks need few of the substitutions, and a test is far cheaper than a scan.
    text = text.translate(_TIDY).replace("\r\n", "\n").replace("\r", "\n")
    if "  " in text:
        text = _SPACE_RUN.sub(lambda m: m.group() if m.start() == 0 or text[m.start() - 1] == "\n" else " ", text)
    if " \n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


def _bom_encoding(head: bytes) -> tuple[str, int] | None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None


def _read_blocks(path: Path, start: int = 0) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while block := fh.read(BLOCK_BYTES):
            yield block


def _is_utf8(path: Path, skip: int, suffix: str) -> bool:
    """One streaming pass: whether the file is valid UTF-8, refusing NUL bytes on the way."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid = True
    for block in _read_blocks(path, skip):
        if b"\0" in block:
            raise ParseError(f"binary content in a {suffix} file")
        if valid:
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                valid = False
    if valid:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    return valid


def _guess_encoding(sample: bytes) -> str:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        raise ParseError("unknown text encoding")
    best = matches[0]
    # Short Western text fits several code pages equally well (cp1250 and cp1257 decode é as well as cp1252 does);
    # a tie goes to the most common one.
    tied = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    return next((name for name in _TIE_BREAK if name in tied), best.encoding)


def detect_encoding(path: Path) -> tuple[str, int]:
    """Find how a text file is encoded, reading it in blocks.

    A byte-order mark wins; then UTF-8 if the whole file decodes as UTF-8; then charset-normalizer's best guess
    from the first MiB.

    Args:
        path: the file.

    Returns:
        A Python codec name and how many bytes of BOM to skip.

    Raises:
        ParseError: the file holds binary data, or no encoding fits it.
    """
    suffix = path.suffix.lower() or "text"
    with path.open("rb") as fh:
        sample = fh.read(_SAMPLE_BYTES)
    if (bom := _bom_encoding(sample)) is not None:
        encoding, skip = bom
    elif _is_utf8(path, 0, suffix):
        encoding, skip = "utf-8", 0
    else:
        encoding, skip = _guess_encoding(sample), 0
    decoded = sample[skip:].decode(encoding, errors="replace")
    if decoded and len(_CONTROL.findall(decoded)) / len(decoded) > _CONTROL_SHARE_LIMIT:
        raise ParseError(f"binary content in a {suffix} file")
    return encoding, skip


def _cut_point(text: str) -> int:
    """Where to cut a carried text: the last paragraph break, else the last line break, else nowhere (0)."""
    cut = text.rfind("\n\n")
    if cut > 0:
        return cut + 2
    if len(text) > _MAX_CARRY_CHARS:
        cut = text.rfind("\n")
        return cut + 1 if cut > 0 else len(text)
    return 0


def iter_text_blocks(path: Path) -> Iterator[str]:
    """Decode a text file block by block, each block ending on a paragraph break where there is one.

    Memory stays near a few MiB whatever the file size: at most two read blocks plus the carried tail of the last
    paragraph (capped, then cut at a line break) is held at once.

    Args:
        path: the file.

    Yields:
        Decoded text with LF line ends; concatenated, the blocks are the whole file.

    Raises:
        ParseError: binary content or an unknown encoding.
    """
    encoding, skip = detect_encoding(path)
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    blocks = _read_blocks(path, skip)
    carry = ""
    block = next(blocks, b"")
    while block:
        # One block of lookahead: the last block is never cut, so a small file comes out as one piece.
        following = next(blocks, b"")
        text = carry + decoder.decode(block, final=not following)
        if not following:
            carry = text
            break
        # A CR at the end may be the first half of a CRLF that the next block completes.
        held = "\r" if text.endswith("\r") else ""
        text = text[: len(text) - len(held)].replace("\r\n", "\n").replace("\r", "\n")
        cut = _cut_point(text)
        if cut:
            yield text[:cut]
        carry = text[cut:] + held
        block = following
    if carry:
        yield carry.replace("\r\n", "\n").replace("\r", "\n")


def parse_text(path: Path) -> Iterator[Section]:
    """Sections of a plain text file (.txt, .rst, .csv, ...): one per decoded block, without headings."""
    for block in iter_text_blocks(path):
        if text := normalise(block):
            yield Section(text)


class SectionBuilder:
    """Collects paragraphs under the current heading path; a new heading closes the block as one `Section`.

    Closed blocks queue up until the caller takes them with `drain`. A block that grows past `flush_chars` is
    closed early, so a long document without headings never sits in memory whole; the chunker packs the pieces
    back together since they share a heading path.
    """

    def __init__(self, *, flush_chars: int = BLOCK_BYTES) -> None:
        self._levels: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []
        self._chars = 0
        self._flush_chars = flush_chars
        self._ready: list[Section] = []

    @property
    def heading_path(self) -> tuple[str, ...]:
        """The titles of the open headings, outermost first."""
        return tuple(title for _, title in self._levels)

    def heading(self, level: int, title: str) -> None:
        """Close the open block and open a heading of `level` (0 for a document title) in place of those at its
        level or deeper. A heading without text only closes the block."""
        self.close()
        if title := " ".join(title.translate(_TIDY).split()):
            while self._levels and self._levels[-1][0] >= level:
                self._levels.pop()
            self._levels.append((level, title))

    def paragraph(self, text: str) -> None:
        """Add a paragraph to the open block, closing the block if it reached `flush_chars`."""
        if text := normalise(text):
            self._paragraphs.append(text)
            self._chars += len(text)
        if self._chars >= self._flush_chars:
            self.close()

    def close(self) -> None:
        """Close the open block, queueing it as a `Section` if it has text."""
        if self._paragraphs:
            self._ready.append(Section("\n\n".join(self._paragraphs), heading_path=self.heading_path))
            self._paragraphs.clear()
            self._chars = 0

    def drain(self) -> Iterator[Section]:
        """Take the closed blocks, oldest first."""
        ready, self._ready = self._ready, []
        yield from ready
