"""Extractive recall: what a session has read is kept as passages in Redis, and a query gets the best by BM25.

This is the memory when no Mamba checkpoint is configured (the embedded default: no pretrained Mamba weights
ship offline). It answers with the session's own words, never with generated text. A session's passages are
one Redis list `chimera:memory:<session>:passages` beside a hash of counters; each `read` appends all its
passages in one RPUSH, so concurrent reads never lose each other's text.
"""

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.memory.long_context.base import LongMemory, LongMemoryError, MemoryInfo, Recollection
from chimera.memory.sessions.base import check_session_id
from chimera.tools.ingest.chunking import Chunker
from chimera.tools.search.analysis import words
from chimera.tools.search.bm25 import BM25Index
from chimera.tools.search.types import Section

_PASSAGE_WORDS = 40  # small passages: a recall answer is a few focused excerpts
_OVERLAP_WORDS = 6
_READ_BLOCK_CHARS = 1 << 20  # passages are cut and sent per MiB, so a 10 MB read never holds all its passages
_CACHED_SESSIONS = 8
_DEFAULT_RECALL_WORDS = 128


def _count_words(text: str) -> int:
    return len(words(text))


class ExtractiveMemory(LongMemory):
    """BM25 over each session's stored passages.

    Args:
        url: Redis URL.
        ttl_s: A session's memory expires this long after its last read (None: never).
    """

    mode = "extractive"

    def __init__(self, url: str, *, ttl_s: int | None = None) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._ttl_s = ttl_s
        self._chunker = Chunker(_count_words, max_tokens=_PASSAGE_WORDS, overlap_tokens=_OVERLAP_WORDS)
        # session -> (its epoch and passage count when indexed, index): rebuilt only when the session changed
        self._indexes: OrderedDict[str, tuple[tuple[bytes, int], BM25Index]] = OrderedDict()

    @staticmethod
    def _keys(session: str) -> tuple[str, str]:
        base = f"chimera:memory:{check_session_id(session)}"
        return f"{base}:passages", f"{base}:info"

    async def read(self, session: str, text: str) -> MemoryInfo:
        passages_key, info_key = self._keys(session)
        for block in _blocks(text):
            passages = await asyncio.to_thread(self._passages, block)
            if not passages:
                continue
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hsetnx(info_key, "epoch", uuid.uuid4().hex)  # new after each forget: stale caches miss
                    pipe.rpush(passages_key, *passages)
                    pipe.hincrby(info_key, "tokens", sum(map(_count_words, passages)))
                    pipe.hincrby(info_key, "bytes", sum(len(p.encode()) for p in passages))
                    if self._ttl_s is not None:
                        pipe.expire(passages_key, self._ttl_s)
                        pipe.expire(info_key, self._ttl_s)
                    await pipe.execute()
            except RedisError as e:
                raise LongMemoryError(f"cannot store memory of session {session}: {e}") from e
        return await self.state_info(session)

    def _passages(self, text: str) -> list[str]:
        return [s.text for s in self._chunker.chunk([Section(text)]) if s.text.strip()]

    async def recall(self, session: str, query: str, max_tokens: int | None = None) -> Recollection:
        max_tokens = max_tokens or _DEFAULT_RECALL_WORDS
        passages_key, _ = self._keys(session)
        _, info_key = self._keys(session)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.llen(passages_key)
                pipe.hget(info_key, "epoch")
                pipe.hget(info_key, "tokens")
                count, epoch, tokens = await pipe.execute()
            if count == 0 or not query.strip():
                return Recollection(session=session, mode=self.mode, text="", tokens_read=int(tokens or 0))
            version = (epoch or b"", count)
            cached = self._indexes.get(session)
            if cached is not None and cached[0] == version:
                index = cached[1]
            else:
                raw = await self._redis.lrange(passages_key, 0, count - 1)
                index = BM25Index(idf="lucene")  # a session may hold a handful of passages
                await asyncio.to_thread(index.add, [_text(p) for p in raw])
                self._cache(session, version, index)
            scores = await asyncio.to_thread(index.scores, query)
            best = [int(i) for i in np.argsort(-scores, kind="stable")[: 1 + max_tokens // _PASSAGE_WORDS]]
            texts = [_text(await self._redis.lindex(passages_key, i) or b"") for i in best if scores[i] > 0]
        except RedisError as e:
            raise LongMemoryError(f"cannot read memory of session {session}: {e}") from e
        # best passage first, so the cut at `max_tokens` words falls on the least relevant one
        text = _clip_words("\n\n".join(texts), max_tokens)
        return Recollection(session=session, mode=self.mode, text=text, tokens_read=int(tokens or 0))

    def _cache(self, session: str, version: tuple[bytes, int], index: BM25Index) -> None:
        self._indexes[session] = (version, index)
        self._indexes.move_to_end(session)
        while len(self._indexes) > _CACHED_SESSIONS:
            self._indexes.popitem(last=False)

    async def state_info(self, session: str) -> MemoryInfo:
        _, info_key = self._keys(session)
        try:
            raw = await self._redis.hgetall(info_key)
        except RedisError as e:
            raise LongMemoryError(f"cannot read memory of session {session}: {e}") from e
        return MemoryInfo(
            session=session,
            mode=self.mode,
            tokens_read=int(raw.get(b"tokens", 0)),
            state_bytes=int(raw.get(b"bytes", 0)),
        )

    async def forget(self, session: str) -> None:
        try:
            await self._redis.delete(*self._keys(session))
        except RedisError as e:
            raise LongMemoryError(f"cannot forget session {session}: {e}") from e
        self._indexes.pop(session, None)

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _blocks(text: str) -> Iterator[str]:
    """`text` in pieces of about `_READ_BLOCK_CHARS`, cut at a paragraph or word break where there is one."""
    start = 0
    while start < len(text):
        end = start + _READ_BLOCK_CHARS
        if end < len(text):
            cut = max(text.rfind("\n\n", start, end), text.rfind(" ", start, end))
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _clip_words(text: str, max_words: int) -> str:
    """The first `max_words` whitespace-separated words of `text`."""
    parts = text.split(" ")
    return text if len(parts) <= max_words else " ".join(parts[:max_words]) + " …"
