"""The gating head: a softmax layer over [sentence embedding ⊕ lexical signals] → P(expert), calibrated.

Trained by `training.py` (multinomial logistic regression, seeded), calibrated by a scale and a shift per class fit
to out-of-fold logits (folded into the weights), saved as one small `.npz` that records the data's SHA-256, the
seed and the CV scores.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

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
    """`probabilities(features)` = softmax(X @ weights + bias), the calibration folded into weights and bias."""

    weights: np.ndarray  # (F, K): F = embedding dim + len(FEATURES), K = len(labels)
    bias: np.ndarray  # (K,)
    labels: tuple[str, ...] = LABELS
    meta: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Raw scores.  # (N, F) -> (N, K)"""
        if features.shape[1] != self.weights.shape[0]:
            raise GatingError(f"head expects {self.weights.shape[0]} features, got {features.shape[1]}")
        return features @ self.weights + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Calibrated P(expert).  # (N, F) -> (N, K), rows sum to 1"""
        return softmax(self.logits(features))

    def save(self, path: Path) -> None:
        write_arrays(path, self.to_arrays())

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The head as named arrays (a cascade stores two heads in one file under two prefixes)."""
        meta = {**self.meta, "labels": list(self.labels), "features": list(FEATURES)}
        return {f"{prefix}weights": self.weights.astype(np.float32), f"{prefix}bias": self.bias.astype(np.float32),
                f"{prefix}meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> "GatingHead":
        """Read a head written by `save`.

        Raises:
            GatingError: missing file, or not a head file.
        """
        arrays = read_arrays(path)
        if "deep_meta" in arrays:
            raise GatingError(f"{path} is a cascade: set router.embedder to `cascade`")
        return cls.from_arrays(arrays, path)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], path: Path, prefix: str = "") -> "GatingHead":
        """The head `to_arrays(prefix)` wrote; `path` only names the file in errors.

        Raises:
            GatingError: the arrays are not a head, or one trained on other signal features.
        """
        try:
            meta = json.loads(arrays[f"{prefix}meta"].tobytes().decode())
            weights, bias = arrays[f"{prefix}weights"], arrays[f"{prefix}bias"]
        except (KeyError, ValueError) as e:
            raise GatingError(f"{path} is not a gating head of this kind: {e}") from e
        if meta.get("features") != list(FEATURES):
            raise GatingError(f"{path} was trained on other signal features; retrain it")
        return cls(weights=weights, bias=bias, labels=tuple(meta["labels"]), meta=meta)


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez_compressed(f, **cast(dict[str, Any], arrays))  # numpy's stub types the keywords as its options


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an `.npz` head file.

    Raises:
        GatingError: missing or unreadable file.
    """
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError as e:
        raise GatingError(f"no gating head at {path}; train one with `chimera router train`") from e
    except (ValueError, OSError) as e:
        raise GatingError(f"{path} is not a gating head: {e}") from e


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def features_of(embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
    """Head input: embeddings beside the signal vectors.  # (N, D) -> (N, D + len(FEATURES))"""
    signals = np.stack([extract_signals(t).vector() for t in texts]) if texts else np.zeros((0, len(FEATURES)))
    return np.hstack([embeddings, signals]).astype(np.float32)


def data_sha256(paths: list[Path]) -> str:
    """SHA-256 of the files' bytes, concatenated in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class LabelledPrompts:
    """Prompts with their expert label and the source each came from (the file's name where rows name none)."""

    texts: list[str]
    labels: list[str]
    sources: list[str]


def source_group(source: str) -> str:
    """The dataset a row's `source` names: `owner/repo@commit:file#row` -> `owner/repo`."""
    return re.sub(r"@\w+$", "", source.split(":", 1)[0])


def load_labelled(paths: list[Path], *, min_labels: int = 2) -> LabelledPrompts:
    """Texts, labels and sources of `{text, label[, source]}` JSONL files.

    Raises:
        GatingError: unreadable lines or labels outside code/math/text/chat, with the line number.
    """
    texts, labels, sources = [], [], []
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = row["text"], row["label"]
                source = str(row.get("source") or path.name)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise GatingError(f"{path}:{n}: expected a JSON object with `text` and `label` ({e})") from e
            if label not in LABELS:
                raise GatingError(f"{path}:{n}: label {label!r} is not one of {', '.join(LABELS)}")
            texts.append(str(text))
            labels.append(label)
            sources.append(source_group(source))
    if len(set(labels)) < min_labels:
        names = ", ".join(str(p) for p in paths)
        raise GatingError(f"{names}: needs examples of at least {min_labels} labels, found {sorted(set(labels))}")
    return LabelledPrompts(texts, labels, sources)


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


def fit_class_calibration(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-class scale and shift of held-out logits that minimise their NLL: softmax(logits * scale + shift).

    One temperature leaves some classes over-confident and others under-confident when the held-out data come
    from other sources; a scale and a shift per class (2K numbers, started from the best single temperature) fix
    that, so `min_confidence` means the same for every expert. Returns (scale (K,), shift (K,), temperature).
    """
    from scipy.optimize import minimize

    temperature = fit_temperature(logits, y)
    k = logits.shape[1]

    def nll(v: np.ndarray) -> float:
        p = softmax(logits * v[:k] + v[k:])
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    start = np.concatenate([np.full(k, 1.0 / temperature), np.zeros(k)])
    best = minimize(nll, start, method="L-BFGS-B").x
    return best[:k], best[k:], temperature


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of held-out logits (grid, then refine)."""

    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])
