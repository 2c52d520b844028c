"""How well a passage supports a claim, and how relevant it is to a question: the scorer citation checks use.

`SupportScorer` is the seam (a real NLI or judge model on a GPU can fit it); `OverlapScorer` is the one that runs
offline on CPU: the packaged MiniLM's cosine between the claim and the passage's closest sentence window, blended
with how many of the claim's content words and numbers the passage contains. A claim whose numbers the passage
lacks is halved: "chunks are 300 tokens" against "chunks are 200 tokens" is the typical invented detail.
The weights and thresholds are calibrated by `bench/citations.py` on `bench/data/citation_claims.jsonl`.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from chimera.models.embedding.base import Embedder

_WORD = re.compile(r"[a-z][a-z0-9_]*|\d+(?:[.,]\d+)*%?")
_NUMBER = re.compile(r"\d")
_CACHE_SIZE = 4096  # passage windows whose embeddings are kept (~1.5 KiB each)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
_STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under about as is are was
    were be been being am do does did done has have had having it its this that these those there here which who
    whom whose what when where why how not no nor so than too very can could may might must shall should will would
    i me my we our you your he him his she her they them their also any all each every some such only own same more
    most other just both few many much one ones via per use used uses using get gets make makes like e g i e etc
    answer question tell says said say according document documents passage""".split()  # noqa: SIM905
)


class SupportScorer(Protocol):
    """Scores in [0, 1] with the thresholds that turn them into decisions."""

    support_threshold: float  # a claim is verified by a passage whose support is at least this
    relevance_threshold: float  # a passage is relevant to a question when its relevance is at least this

    def support(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """How well each passage supports each claim.  # (C,), (P,) -> (C, P)"""
        ...

    def relevance(self, question: str, passages: Sequence[str]) -> np.ndarray:
        """How relevant each passage is to the question.  # (P,) -> (P,)"""
        ...


@dataclass(frozen=True)
class OverlapWeights:
    """The calibrated constants of `OverlapScorer` (see `bench/citations.py` for how they were chosen)."""

    semantic: float = 0.8  # weight of the cosine in support; the rest is lexical overlap
    support_threshold: float = 0.8
    relevance_semantic: float = 0.2  # weight of the cosine in relevance
    relevance_threshold: float = 0.47
    missing_number_factor: float = 0.5


class OverlapScorer:
    """MiniLM cosine plus content-word overlap; the embedder is injected, so one loaded model serves everything.

    Args:
        embedder: unit-norm sentence embeddings (the dense search's `SentenceEmbedder`).
        weights: blend and thresholds.
    """

    def __init__(self, embedder: Embedder, weights: OverlapWeights | None = None) -> None:
        self.embedder = embedder
        self.weights = weights or OverlapWeights()
        self.support_threshold = self.weights.support_threshold
        self.relevance_threshold = self.weights.relevance_threshold
        self._cache: dict[str, np.ndarray] = {}

    def support(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        semantic = self._semantic(claims, passages)  # (C, P)
        lexical = np.array([[_covered(c, p) for p in passages] for c in claims], dtype=np.float32).reshape(
            semantic.shape
        )  # (C, P)
        w = self.weights
        score = w.semantic * semantic + (1 - w.semantic) * lexical  # (C, P)
        numbers = np.array([[_numbers_found(c, p) for p in passages] for c in claims], dtype=bool).reshape(
            semantic.shape
        )  # (C, P)
        return np.where(numbers, score, score * w.missing_number_factor).clip(0, 1)  # (C, P)

    def relevance(self, question: str, passages: Sequence[str]) -> np.ndarray:
        semantic = self._semantic([question], passages)[0]  # (P,)
        lexical = np.array([_covered(question, p) for p in passages], dtype=np.float32)  # (P,)
        w = self.weights.relevance_semantic
        return (w * semantic + (1 - w) * lexical).clip(0, 1)  # (P,)

    def _semantic(self, texts: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Cosine of each text with the closest window of each passage.  # (T,), (P,) -> (T, P)"""
        if not texts or not passages:
            return np.zeros((len(texts), len(passages)), dtype=np.float32)
        windows = [passage_windows(p) for p in passages]
        flat = [w for ws in windows for w in ws]
        cos = self.embedder.embed(list(texts)) @ self._window_vectors(flat).T  # (T, W)
        out = np.zeros((len(texts), len(passages)), dtype=np.float32)  # (T, P)
        start = 0
        for j, ws in enumerate(windows):
            out[:, j] = cos[:, start : start + len(ws)].max(axis=1)  # (T,)
            start += len(ws)
        return out.clip(0, 1)

    def _window_vectors(self, windows: list[str]) -> np.ndarray:
        """Embeddings of passage windows, memoised: one answer's claims and its question meet the same passages.
        # (W,) -> (W, D)"""
        missing = [w for w in dict.fromkeys(windows) if w not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > _CACHE_SIZE:
                self._cache.clear()
            self._cache.update(zip(missing, self.embedder.embed(missing), strict=True))
        return np.stack([self._cache[w] for w in windows])  # (W, D)


def passage_windows(passage: str, *, size: int = 2) -> list[str]:
    """The passage's sentences, each with the next `size - 1`: a claim usually restates one or two sentences,
    and a whole chunk (~200 word pieces) dilutes the embedding of the one that matters."""
    sentences = [s.strip() for s in _SENTENCE_END.split(passage) if len(s.strip()) > 2]
    if len(sentences) <= 1:
        return [passage.strip() or passage]
    return [*sentences, *(" ".join(sentences[i : i + size]) for i in range(len(sentences) - size + 1))]


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning (no stopwords), crudely stemmed, and numbers as written."""
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOPWORDS or (len(w) < 3 and not _NUMBER.match(w)):
            continue
        words.add(_stem(w))
    return words


def _stem(word: str) -> str:
    if _NUMBER.match(word):
        return word.rstrip("%").replace(",", "")
    for suffix in ("ies", "es", "s", "ed", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _covered(claim: str, passage: str) -> float:
    """The share of the claim's content words that the passage contains; 0 for a claim without any ("See [1].")."""
    words = content_words(claim)
    if not words:
        return 0.0
    return len(words & content_words(passage)) / len(words)


def _numbers_found(claim: str, passage: str) -> bool:
    """Whether every number of the claim appears in the passage."""
    numbers = {w for w in content_words(claim) if _NUMBER.match(w)}
    return numbers <= content_words(passage)
