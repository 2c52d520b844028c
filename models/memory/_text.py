"""Text to token chunks without ever tokenizing the whole text: pieces cut where tokenization does not change.

A 10 MB text tokenized at once holds millions of token ids with their offsets; here it is cut into pieces of
about `piece_chars` characters, each tokenized alone, and the ids are handed on in chunks of `chunk_tokens`.
Pieces end just before a single space between two non-space characters. Byte-level BPE tokenizers (GPT-2,
GPT-NeoX — Mamba-2's —, Llama-3, SmolLM2) start a pre-token at exactly such a space, so the pieces' tokens equal
the whole text's (test). Only a piece with no such space in it (a long run without spaces) is cut mid-run, where
the tokens near the cut may differ from a whole-text tokenization.
"""

from collections.abc import Iterator
from typing import Any

PIECE_CHARS = 1 << 16


def text_pieces(text: str, piece_chars: int = PIECE_CHARS) -> Iterator[str]:
    """`text` in consecutive pieces of at most `piece_chars` characters (more only if one word is longer)."""
    start = 0
    while len(text) - start > piece_chars:
        cut = _cut(text, start, start + piece_chars)
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def _cut(text: str, start: int, end: int) -> int:
    """The last index in (start, end] holding a space with non-space on both sides; `end` if there is none."""
    i = text.rfind(" ", start + 1, end + 1)
    while i > start:
        if not text[i - 1].isspace() and i + 1 < len(text) and not text[i + 1].isspace():
            return i
        i = text.rfind(" ", start + 1, i)
    return end


def token_chunks(tokenizer: Any, text: str, chunk_tokens: int, piece_chars: int = PIECE_CHARS) -> Iterator[list[int]]:
    """The token ids of `text` (no special tokens added) in chunks of `chunk_tokens`, the last one shorter.

    Args:
        tokenizer: a transformers tokenizer.
        text: any length; at most one piece of it is tokenized at a time.
        chunk_tokens: ids per chunk.
        piece_chars: characters tokenized at a time.
    """
    pending: list[int] = []
    for piece in text_pieces(text, piece_chars):
        # verbose=False: a piece is longer than the model's max length on purpose; the model never sees it whole
        pending.extend(tokenizer.encode(piece, add_special_tokens=False, verbose=False))
        while len(pending) >= chunk_tokens:
            yield pending[:chunk_tokens]
            del pending[:chunk_tokens]
    if pending:
        yield pending
