"""The embeddings service behind POST /v1/embeddings: the dense search's own sentence embedder, with input limits.

The vectors are the ones the document index holds for the same text (same model folder, same `max_tokens`), so a
client can embed queries or documents for its own store and compare them with Chimera's.
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chimera.errors import ChimeraError
from chimera.models.embedding.minilm import SentenceEmbedder

MAX_INPUTS = 256  # texts per request: 256 texts of 256 word pieces take a few seconds of CPU


class EmbeddingInputError(ChimeraError):
    """The request's input cannot be embedded as it is (empty, too many texts, a text too long); `param` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Embeddings:
    """One unit-norm row per input text, and the word pieces read."""

    vectors: np.ndarray  # (N, D) float32
    prompt_tokens: int


class EmbeddingService:
    """Embeds texts with the configured embedding model, one request's batch at a time (off the event loop)."""

    def __init__(self, model: str, embedder: SentenceEmbedder) -> None:
        self.model = model  # the id clients name in `model` (and /v1/models lists)
        self.embedder = embedder
        self._lock = asyncio.Lock()  # the model uses every core: one batch at a time

    @property
    def max_tokens(self) -> int:
        """Word pieces one text may have (special tokens included); longer texts are refused, not cut."""
        return self.embedder.max_tokens

    @property
    def dim(self) -> int:
        return self.embedder.dim

    async def embed(self, texts: list[str]) -> Embeddings:
        """Embeddings of `texts`, in their order.

        Raises:
            EmbeddingInputError: no text, more than `MAX_INPUTS`, an empty text, or one over `max_tokens`.
        """
        if not texts:
            raise EmbeddingInputError("input must hold at least one text", "input")
        if len(texts) > MAX_INPUTS:
            raise EmbeddingInputError(f"input has {len(texts)} texts; at most {MAX_INPUTS} per request", "input")
        for i, text in enumerate(texts):
            if not text:
                raise EmbeddingInputError(f"input.{i} is empty", f"input.{i}")
        async with self._lock:
            counts = await asyncio.to_thread(self.embedder.count_tokens, texts)
            for i, count in enumerate(counts):
                if count > self.max_tokens:
                    raise EmbeddingInputError(
                        f"input.{i} has {count} word pieces; {self.model} reads at most {self.max_tokens}",
                        f"input.{i}",
                    )
            vectors = await asyncio.to_thread(self.embedder.embed, texts)  # (N, D)
        return Embeddings(vectors, sum(counts))


def embedding_model_id(setting: str, folder: Path) -> str:
    """The model id of `search.embedding_model`: the packaged model's name, or the local folder's name."""
    return setting.removeprefix("packaged:") if setting.startswith("packaged:") else folder.name
