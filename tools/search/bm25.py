"""BM25 with `rank_bm25.BM25Okapi`'s exact scores, from precomputed sparse term weights.

`rank_bm25` loops in Python over every document for every query term. Here the term-frequency matrix is kept as
a sparse column-per-term matrix and each (document, term) BM25 weight is computed once per index version, so a
query only sums the posting lists of its terms. Adding or dropping documents never re-tokenizes the corpus: the
weights are recomputed (one vectorized pass over the non-zeros) at the next query, because N, avgdl and every
idf change with the corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from chimera.tools.search.analysis import analyze


class BM25Index:
    """Row-aligned BM25Okapi index: row i is the i-th document added (and kept).

    Args:
        k1, b, epsilon: BM25Okapi's parameters, with its defaults.
        idf: `okapi` is rank_bm25's (negative for terms in over half the documents, floored at `epsilon` times
            the mean); `lucene` is log(1 + (N - df + 0.5) / (df + 0.5)), always positive, which ranks sensibly
            in corpora of a few documents (a session's memory) where okapi's idf turns negative.
    """

    def __init__(
        self, *, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25, idf: Literal["okapi", "lucene"] = "okapi"
    ) -> None:
        self.k1, self.b, self.epsilon, self.idf_kind = k1, b, epsilon, idf
        self._vocab: dict[str, int] = {}
        self._tf = sp.csr_matrix((0, 0), dtype=np.float64)  # (N, V) term counts
        self._doc_len = np.zeros(0, dtype=np.float64)  # (N,)
        self._pending: list[list[str]] = []
        self._weights: sp.csc_matrix | None = None  # (N, V) BM25 weight of each posting
        self._idf: np.ndarray | None = None  # (V,)

    def __len__(self) -> int:
        return self._tf.shape[0] + len(self._pending)

    def add(self, texts: Iterable[str]) -> None:
        """Append one document per text (analyzed with `analysis.analyze`)."""
        self.add_tokens(analyze(t) for t in texts)

    def add_tokens(self, documents: Iterable[list[str]]) -> None:
        """Append pre-tokenized documents."""
        self._pending.extend(documents)
        self._weights = None

    def keep(self, mask: np.ndarray) -> None:
        """Drop every row where `mask` is False."""
        self._flush()
        self._tf = self._tf[mask]
        self._doc_len = self._doc_len[mask]
        self._weights = None

    def scores(self, query: str | list[str]) -> np.ndarray:
        """BM25Okapi score of every row for `query`, equal to `BM25Okapi.get_scores`.  # (N,) float64

        Args:
            query: text (analyzed here) or tokens; repeated terms count repeatedly, as in rank_bm25.
        """
        tokens = analyze(query) if isinstance(query, str) else query
        self._flush()
        n = self._tf.shape[0]
        out = np.zeros(n, dtype=np.float64)
        if n == 0:
            return out
        weights, idf = self._ensure_weights()
        for term in tokens:
            j = self._vocab.get(term)
            if j is None or idf[j] == 0:
                continue
            lo, hi = weights.indptr[j], weights.indptr[j + 1]
            out[weights.indices[lo:hi]] += weights.data[lo:hi]
        return out

    def save(self, directory: Path) -> None:
        """Write the index under `directory` (term counts, lengths, vocabulary)."""
        self._flush()
        directory.mkdir(parents=True, exist_ok=True)
        sp.save_npz(directory / "bm25_tf.npz", self._tf)
        np.save(directory / "bm25_doc_len.npy", self._doc_len)
        (directory / "bm25_vocab.json").write_text(json.dumps(list(self._vocab)))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Read an index written by `save` (with the default parameters)."""
        index = cls()
        index._tf = sp.load_npz(directory / "bm25_tf.npz").tocsr()
        index._doc_len = np.load(directory / "bm25_doc_len.npy")
        index._vocab = {t: j for j, t in enumerate(json.loads((directory / "bm25_vocab.json").read_text()))}
        return index

    def _weight(self, tf: np.ndarray, doc_len: np.ndarray, idf: np.ndarray | float, avgdl: float) -> np.ndarray:
        # rank_bm25's expression, term for term, so the floating-point results are the same.
        k1, b = self.k1, self.b
        return idf * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avgdl)))

    def _flush(self) -> None:
        if not self._pending:
            return
        rows, cols, vals = [], [], []
        lengths = np.empty(len(self._pending), dtype=np.float64)
        start = self._tf.shape[0]
        for i, tokens in enumerate(self._pending):
            lengths[i] = len(tokens)
            for term, count in Counter(tokens).items():
                j = self._vocab.setdefault(term, len(self._vocab))
                rows.append(i)
                cols.append(j)
                vals.append(count)
        block = sp.csr_matrix((vals, (rows, cols)), shape=(len(self._pending), len(self._vocab)), dtype=np.float64)
        old = self._tf
        old.resize((start, len(self._vocab)))
        self._tf = sp.vstack([old, block], format="csr")
        self._doc_len = np.concatenate([self._doc_len, lengths])
        self._pending = []

    def _ensure_weights(self) -> tuple[sp.csc_matrix, np.ndarray]:
        if self._weights is not None and self._idf is not None:
            return self._weights, self._idf
        tf = self._tf.tocsc()
        tf.sort_indices()
        n = tf.shape[0]
        df = np.diff(tf.indptr).astype(np.float64)
        present = df > 0
        raw = np.zeros_like(df)
        if self.idf_kind == "lucene":
            raw[present] = np.log1p((n - df[present] + 0.5) / (df[present] + 0.5))
        else:
            raw[present] = np.log(n - df[present] + 0.5) - np.log(df[present] + 0.5)
        idf = raw.copy()
        if present.any() and self.idf_kind == "okapi":
            floor = self.epsilon * (raw[present].sum() / present.sum())
            idf[present & (raw < 0)] = floor
        avgdl = self._doc_len.sum() / n
        cols = np.repeat(np.arange(tf.shape[1]), np.diff(tf.indptr))
        data = self._weight(tf.data, self._doc_len[tf.indices], idf[cols], avgdl)
        self._weights = sp.csc_matrix((data, tf.indices, tf.indptr), shape=tf.shape)
        self._idf = idf
        return self._weights, self._idf
