"""The `Embedder` seam: texts in, unit-norm vectors out; `EmbedderError` when a model cannot be loaded."""

from typing import Protocol

import numpy as np

from chimera.errors import ChimeraError


class Embedder(Protocol):
    """Texts in, one unit-norm row each out."""

    kind: str
    max_tokens: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class EmbedderError(ChimeraError):
    """The embedding model could not be found or loaded."""
