"""The chunker: parsed sections in, retrieval-sized pieces out, cut where the text has its own seams.

A chunk never crosses a heading or a page. Small paragraphs under one heading and page are packed together; a
paragraph too long for one chunk is cut at sentence ends (a too-long sentence at word breaks), and its successive
pieces share a few trailing sentences or words so that no thought is lost at a cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from chimera.tools.search.types import Section

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n+")
_WORD_END = re.compile(r"\s+")
# A chunk holds at most this many characters per token of budget: a guard against giant "words" (base64 blobs,
# minified code) that a tokenizer counts as a single unknown token.
_CHARS_PER_TOKEN = 16
# Pre-tokenizers that split on whitespace first, so that counts of whitespace-joined texts add up.
_WHITESPACE_FIRST = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})


@runtime_checkable
class BatchTokenCounter(Protocol):
    """A token counter that can also count many texts in one call; the chunker uses `count_many` when offered.

    `additive` says that texts joined by whitespace count as the sum of their counts (true of tokenizers that split
    on whitespace before anything else); the chunker then trusts its sums instead of recounting each chunk.
    """

    additive: bool

    def __call__(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class WordPieceCounter:
    """Counts a tokenizer's tokens in texts, without special tokens, truncation or padding."""

    def __init__(self, tokenizer: Tokenizer, *, batch_size: int = 1024) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self.additive = type(tokenizer.pre_tokenizer).__name__ in _WHITESPACE_FIRST

    def __call__(self, text: str) -> int:
        """The number of tokens in `text`."""
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens in each text, encoded in parallel batches of bounded size."""
        counts: list[int] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            counts.extend(len(encoding) for encoding in self._tokenizer.encode_batch(batch, add_special_tokens=False))
        return counts


def wordpiece_counter(model_dir: Path | None = None) -> WordPieceCounter:
    """A token counter from the `tokenizer.json` of a local sentence-transformers folder.

    Args:
        model_dir: the model folder; by default the packaged all-MiniLM-L6-v2 that the embedder uses.

    Returns:
        A callable `text -> token count` that also counts batches (`count_many`).

    Raises:
        FileNotFoundError: the folder has no `tokenizer.json`.
        EmbedderError: no folder was given and the packaged model is not installed.
    """
    from tokenizers import Tokenizer

    if model_dir is None:
        from chimera.models.embedding.minilm import packaged_model_dir

        model_dir = packaged_model_dir()
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
    return WordPieceCounter(Tokenizer.from_file(str(path)))


@dataclass(frozen=True, slots=True)
class _Unit:
    """A slice of a paragraph (with its trailing whitespace) and its token count."""

    text: str
    tokens: int


def _pieces(text: str, seams: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `seams`; the pieces join back into `text`."""
    pieces: list[str] = []
    start = 0
    for match in seams.finditer(text):
        if match.end() > start and match.start() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class Chunker:
    """Cuts sections into chunks of at most `max_tokens` tokens, following the document's structure.

    Args:
        count_tokens: the token counter of the embedding model (see `wordpiece_counter`); one that also has
            `count_many` is used in batches.
        max_tokens: the most tokens in a chunk.
        overlap_tokens: about how many tokens successive pieces of one long paragraph share.

    Raises:
        ValueError: unless `max_tokens > overlap_tokens >= 0`.
    """

    def __init__(self, count_tokens: Callable[[str], int], *, max_tokens: int = 200, overlap_tokens: int = 32) -> None:
        if overlap_tokens < 0:
            raise ValueError(f"overlap_tokens must be >= 0, got {overlap_tokens}")
        if max_tokens <= overlap_tokens:
            raise ValueError(f"max_tokens ({max_tokens}) must be greater than overlap_tokens ({overlap_tokens})")
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.max_chars = max_tokens * _CHARS_PER_TOKEN
        self._batch = count_tokens if isinstance(count_tokens, BatchTokenCounter) else None
        # Unless the counter promises additive counts, each chunk is recounted as joined (one more count per chunk).
        self._recount = self._batch is None or not self._batch.additive

    def chunk(self, sections: Iterable[Section]) -> Iterator[Section]:
        """Cut sections into chunks, lazily, in order.

        Args:
            sections: parsed sections; consecutive ones with the same page and heading path are packed together.

        Yields:
            Chunks as sections, each with the page and heading path of the text it came from.
        """
        packed: list[str] = []
        packed_tokens = packed_chars = 0
        place: tuple[int | None, tuple[str, ...]] | None = None
        for section in sections:
            page, heading_path = section.page, section.heading_path
            if (page, heading_path) != place:
                yield from self._packed(packed, place)
                packed_tokens = packed_chars = 0
                place = (page, heading_path)
            paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(section.text) if p.strip()]
            for paragraph, tokens in zip(paragraphs, self._count_paragraphs(paragraphs), strict=True):
                if tokens is None or tokens > self.max_tokens:
                    yield from self._packed(packed, place)
                    packed_tokens = packed_chars = 0
                    for text in self._split_long(paragraph):
                        yield Section(text, page, heading_path)
                    continue
                if packed and (
                    packed_tokens + tokens > self.max_tokens or packed_chars + len(paragraph) > self.max_chars
                ):
                    yield from self._packed(packed, place)
                    packed_tokens = packed_chars = 0
                packed.append(paragraph)
                packed_tokens += tokens
                packed_chars += len(paragraph)
        yield from self._packed(packed, place)

    def _count_many(self, texts: Sequence[str]) -> list[int]:
        if self._batch is not None:
            return self._batch.count_many(texts)
        return [self.count_tokens(text) for text in texts]

    def _count_paragraphs(self, paragraphs: list[str]) -> list[int | None]:
        """Token counts, or None for a paragraph too long in characters to be worth counting whole."""
        short = [p for p in paragraphs if len(p) <= self.max_chars]
        counts = iter(self._count_many(short))
        return [next(counts) if len(p) <= self.max_chars else None for p in paragraphs]

    def _packed(self, paragraphs: list[str], place: tuple[int | None, tuple[str, ...]] | None) -> Iterator[Section]:
        """Emit the packed paragraphs as chunks and empty the list; halves them if the joined text counts over."""
        if not paragraphs or place is None:
            paragraphs.clear()
            return
        pending = [list(paragraphs)]
        paragraphs.clear()
        while pending:
            group = pending.pop(0)
            text = "\n\n".join(group)
            # The packing summed paragraph counts; a counter where joining adds tokens is caught here.
            if len(group) > 1 and self._recount and self.count_tokens(text) > self.max_tokens:
                middle = len(group) // 2
                pending[:0] = [group[:middle], group[middle:]]
                continue
            yield Section(text, place[0], place[1])

    def _split_long(self, paragraph: str) -> Iterator[str]:
        """Pieces of a paragraph too long for one chunk, each overlapping the one before."""
        units = self._units(paragraph)
        prefix: list[_Unit] = []
        index = 0
        while index < len(units):
            window = list(prefix)
            tokens = sum(unit.tokens for unit in window)
            chars = sum(len(unit.text) for unit in window)
            start = index
            while index < len(units) and (index == start or self._fits(tokens, chars, units[index])):
                window.append(units[index])
                tokens += units[index].tokens
                chars += len(units[index].text)
                index += 1
            text = "".join(unit.text for unit in window).strip()
            # Units were counted one by one; a counter where joining adds tokens is caught here.
            while len(window) > 1 and self._recount and self.count_tokens(text) > self.max_tokens:
                if index - start > 1:
                    window.pop()
                    index -= 1
                else:
                    window = window[-1:]
                text = "".join(unit.text for unit in window).strip()
            if text:
                yield text
            if index < len(units):
                prefix = self._overlap(window, units[index])

    def _fits(self, tokens: int, chars: int, unit: _Unit) -> bool:
        return tokens + unit.tokens <= self.max_tokens and chars + len(unit.text) <= self.max_chars

    def _overlap(self, window: list[_Unit], following: _Unit) -> list[_Unit]:
        """The tail of `window` the next piece starts with: whole units if they fit the overlap, else words."""
        budget = min(self.overlap_tokens, self.max_tokens - following.tokens)
        char_budget = self.max_chars - len(following.text)
        tail: list[_Unit] = []
        used = chars = 0
        for unit in reversed(window[1:]):
            if used + unit.tokens > budget or chars + len(unit.text) > char_budget:
                break
            tail.insert(0, unit)
            used += unit.tokens
            chars += len(unit.text)
        if tail or budget <= 0 or not window:
            return tail
        words = _pieces(window[-1].text, _WORD_END)
        if len(words) < 2:
            return []
        for word, tokens in zip(reversed(words[1:]), reversed(self._count_many(words[1:])), strict=True):
            if used + tokens > budget or chars + len(word) > char_budget:
                break
            tail.insert(0, _Unit(word, tokens))
            used += tokens
            chars += len(word)
        return tail

    def _units(self, paragraph: str) -> list[_Unit]:
        """The paragraph as sentences, and words for a sentence too long for a chunk, each within the budget."""
        units: list[_Unit] = []
        sentences = _pieces(paragraph, _SENTENCE_END)
        for sentence, tokens in zip(sentences, self._count_paragraphs(sentences), strict=True):
            if tokens is not None and tokens <= self.max_tokens:
                units.append(_Unit(sentence, tokens))
                continue
            words = _pieces(sentence, _WORD_END)
            for word, word_tokens in zip(words, self._count_paragraphs(words), strict=True):
                if word_tokens is not None and word_tokens <= self.max_tokens:
                    units.append(_Unit(word, word_tokens))
                else:
                    units.extend(self._characters(word))
        return units

    def _characters(self, word: str) -> Iterator[_Unit]:
        """A word too long for a chunk, cut into the longest character runs that fit (binary search)."""
        start = 0
        while start < len(word):
            low, high = start + 1, min(len(word), start + self.max_chars)
            while low < high:
                middle = (low + high + 1) // 2
                if self.count_tokens(word[start:middle]) <= self.max_tokens:
                    low = middle
                else:
                    high = middle - 1
            yield _Unit(word[start:low], self.count_tokens(word[start:low]))
            start = low
