"""The gating head: a softmax layer over [sentence embedding ⊕ lexical signals] → P(expert), temperature-calibrated.

Trained by `train_head` (multinomial logistic regression, seeded), calibrated by fitting one temperature to
out-of-fold logits, saved as one small `.npz` that records the data's SHA-256, the seed and the CV scores.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chimera.errors import ChimeraError
from chimera.models.router.signals import FEATURES, extract_signals
from chimera.models.specs import EXPERT_NAMES

LABELS: tuple[str, ...] = EXPERT_NAMES
ARTIFACTS = Path(__file__).parent / "artifacts"


def packaged_head(embedder: str) -> Path:
    """The head shipped in the package for an embedder kind (`static` or `contextual`)."""
    return ARTIFACTS / f"gating-{embedder}.npz"


class GatingError(ChimeraError):
    """A head file is missing, malformed, or does not fit the embedder."""


@dataclass(frozen=True)
class GatingHead:
    """`probabilities(embeddings, signals)` = softmax((X @ weights + bias) / temperature)."""

    weights: np.ndarray  # (F, K): F = embedding dim + len(FEATURES), K = len(labels)
    bias: np.ndarray  # (K,)
    temperature: float
    labels: tuple[str, ...] = LABELS
    meta: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Raw scores.  # (N, F) -> (N, K)"""
        if features.shape[1] != self.weights.shape[0]:
            raise GatingError(f"head expects {self.weights.shape[0]} features, got {features.shape[1]}")
        return features @ self.weights + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Calibrated P(expert).  # (N, F) -> (N, K), rows sum to 1"""
        return softmax(self.logits(features) / self.temperature)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "labels": list(self.labels), "temperature": self.temperature, "features": list(FEATURES)}
        with path.open("wb") as f:
            np.savez_compressed(f, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> "GatingHead":
        """Read a head written by `save`.

        Raises:
            GatingError: missing file, or not a head file.
        """
        try:
            with np.load(path) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                weights, bias = data["weights"], data["bias"]
        except FileNotFoundError as e:
            raise GatingError(f"no gating head at {path}; train one with `chimera router train`") from e
        except (KeyError, ValueError, OSError) as e:
            raise GatingError(f"{path} is not a gating head: {e}") from e
        if meta.get("features") != list(FEATURES):
            raise GatingError(f"{path} was trained on other signal features; retrain it")
        return cls(weights=weights, bias=bias, temperature=float(meta["temperature"]), labels=tuple(meta["labels"]),
                   meta=meta)  # fmt: skip


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def features_of(embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
    """Head input: embeddings beside the signal vectors.  # (N, D) -> (N, D + len(FEATURES))"""
    signals = np.stack([extract_signals(t).vector() for t in texts]) if texts else np.zeros((0, len(FEATURES)))
    return np.hstack([embeddings, signals]).astype(np.float32)


def data_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_labelled(path: Path, *, min_labels: int = 2) -> tuple[list[str], list[str]]:
    """Texts and labels of a `{text, label}` JSONL file.

    Raises:
        GatingError: unreadable lines or labels outside code/math/text/chat, with the line number.
    """
    texts, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise GatingError(f"{path}:{n}: expected a JSON object with `text` and `label` ({e})") from e
        if label not in LABELS:
            raise GatingError(f"{path}:{n}: label {label!r} is not one of {', '.join(LABELS)}")
        texts.append(str(text))
        labels.append(label)
    if len(set(labels)) < min_labels:
        raise GatingError(f"{path}: needs examples of at least {min_labels} labels, found {sorted(set(labels))}")
    return texts, labels


def fit_logistic(features: np.ndarray, y: np.ndarray, *, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns (weights (F, K), bias (K,)) over all of `LABELS`."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(features, y)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: logit of class 1 against class 0
        coef, intercept = np.vstack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    weights = np.zeros((features.shape[1], len(LABELS)), dtype=np.float32)
    bias = np.full(len(LABELS), -1e4, dtype=np.float32)  # a label absent from training is never chosen
    for row, label_index in enumerate(model.classes_):
        weights[:, label_index] = coef[row]
        bias[label_index] = intercept[row]
    return weights, bias


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of held-out logits (grid, then refine)."""

    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])
