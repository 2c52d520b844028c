"""What turns texts into calibrated P(expert): one head over one embedder, or the static → contextual cascade.

The cascade answers with the static head (word-piece vectors ⊕ signals, well under a millisecond) when its top two
probabilities are at least `margin` apart, and runs the transformer only for the rest: there a deep head over
static ⊕ contextual ⊕ signals answers. The margin is chosen at training time on out-of-source predictions.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from chimera.models.embedding.base import Embedder
from chimera.models.router.gating import GatingError, GatingHead, features_of, read_arrays, write_arrays
from chimera.models.specs import ExpertName


@dataclass(frozen=True)
class GateScores:
    """Calibrated P(expert) per text, and which texts the cascade's deep stage answered."""

    probabilities: np.ndarray  # (N, K)
    deep: np.ndarray  # (N,) bool


class Gate(Protocol):
    """Texts in, `GateScores` out; `blocking` when scoring may run a transformer (callers leave the event loop)."""

    kind: str
    blocking: bool
    labels: tuple[ExpertName, ...]

    def score(self, texts: list[str]) -> GateScores: ...

    def warm_up(self) -> None:
        """Load every model now, and fail at startup if a head does not fit its features."""


class HeadGate:
    """One gating head over one embedder's features and the signals."""

    def __init__(self, embedder: Embedder, head: GatingHead) -> None:
        self.embedder, self.head = embedder, head
        self.kind = embedder.kind
        self.blocking = embedder.kind != "static"  # a transformer forward; static vectors are a table look-up
        self.labels: tuple[ExpertName, ...] = head.labels

    def score(self, texts: list[str]) -> GateScores:
        probabilities = self.head.probabilities(features_of(self.embedder.embed(texts), texts))  # (N, K)
        return GateScores(probabilities, np.zeros(len(texts), dtype=bool))

    def warm_up(self) -> None:
        self.score(["warm-up"])


def top_two_gap(probabilities: np.ndarray) -> np.ndarray:
    """P(first choice) - P(second choice) per row.  # (N, K) -> (N,)"""
    ordered = np.sort(probabilities, axis=1)  # (N, K)
    return ordered[:, -1] - ordered[:, -2]


@dataclass(frozen=True)
class CascadeHead:
    """The static head, the deep head (over static ⊕ contextual ⊕ signals) and the gap below which it answers."""

    shallow: GatingHead
    deep: GatingHead
    margin: float

    @property
    def meta(self) -> dict[str, object]:
        return self.deep.meta

    def save(self, path: Path) -> None:
        write_arrays(path, {**self.shallow.to_arrays("shallow_"), **self.deep.to_arrays("deep_")})

    @classmethod
    def load(cls, path: Path) -> "CascadeHead":
        """Read a cascade written by `save`.

        Raises:
            GatingError: missing file, not a cascade, or heads trained on other signal features.
        """
        arrays = read_arrays(path)
        if "deep_meta" not in arrays:
            raise GatingError(f"{path} is a single head, not a cascade: set router.embedder to its kind")
        deep = GatingHead.from_arrays(arrays, path, "deep_")
        return cls(GatingHead.from_arrays(arrays, path, "shallow_"), deep, float(deep.meta["cascade_margin"]))


class CascadeGate:
    """Static head first; the transformer and the deep head only where the static head's top two are close."""

    kind = "cascade"
    blocking = True  # some turns run the transformer

    def __init__(self, static: Embedder, contextual: Embedder, head: CascadeHead) -> None:
        self.static, self.contextual, self.head = static, contextual, head
        self.labels: tuple[ExpertName, ...] = head.deep.labels

    def score(self, texts: list[str]) -> GateScores:
        static = self.static.embed(texts)  # (N, D)
        probabilities = self.head.shallow.probabilities(features_of(static, texts))  # (N, K)
        deep = top_two_gap(probabilities) < self.head.margin  # (N,)
        if deep.any():
            hard = [t for t, d in zip(texts, deep, strict=True) if d]
            both = np.hstack([static[deep], self.contextual.embed(hard)])  # (M, 2D)
            probabilities[deep] = self.head.deep.probabilities(features_of(both, hard))  # (M, K)
        return GateScores(probabilities, deep)

    def warm_up(self) -> None:
        text = ["warm-up"]
        static = self.static.embed(text)
        self.head.shallow.probabilities(features_of(static, text))
        self.head.deep.probabilities(features_of(np.hstack([static, self.contextual.embed(text)]), text))
