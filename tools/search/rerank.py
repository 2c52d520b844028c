"""An optional cross-encoder stage: rescoring the fused candidates with a model that reads query and chunk together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.tools.search.types import RetrievedChunk

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


class Reranker:
    """A sentence-transformers `CrossEncoder` loaded from a local folder (never from a hub).

    Args:
        model_dir: the cross-encoder's folder.
        depth: how many fused candidates it rescores.
    """

    def __init__(self, model_dir: Path, *, depth: int = 20, max_tokens: int = 256) -> None:
        self.model_dir = model_dir
        self.depth = depth
        self.max_tokens = max_tokens
        self._model: CrossEncoder | None = None

    def rerank(self, query: str, candidates: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        """The first `depth` candidates reordered by cross-encoder score; the rest keep their order after them."""
        head, tail = list(candidates[: self.depth]), list(candidates[self.depth :])
        if not head:
            return tail
        scores = self._load().predict([(query, c.chunk.index_text) for c in head], show_progress_bar=False)
        rescored = [RetrievedChunk(c.chunk, float(s), "rerank") for c, s in zip(head, scores, strict=True)]
        return sorted(rescored, key=lambda r: -r.score) + tail

    def _load(self) -> CrossEncoder:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(
                str(self.model_dir), device="cpu", max_length=self.max_tokens, local_files_only=True
            )
        return self._model
