"""Train and cross-validate the gating head on a `{text, label}` JSONL file (`chimera router train`)."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from chimera.models.embedding.base import Embedder
from chimera.models.router.gating import (
    LABELS,
    GatingHead,
    data_sha256,
    features_of,
    fit_logistic,
    fit_temperature,
    load_labelled,
    softmax,
)
from chimera.models.router.signals import FEATURES

#: Inverse L2 strength of the logistic regression (sklearn's C), chosen by 5-fold CV on the dev data.
DEFAULT_C = 16.0


@dataclass(frozen=True)
class TrainReport:
    """What training measured: cross-validated scores of the full head and of its two halves alone."""

    n: int
    folds: int
    cv_macro_f1: float
    cv_accuracy: float
    cv_macro_f1_embedding_only: float
    cv_macro_f1_signals_only: float
    temperature: float
    nll_before: float
    nll_after: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true.tolist()))))


def _out_of_fold_logits(x: np.ndarray, y: np.ndarray, *, folds: int, c: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    logits = np.zeros((len(y), len(LABELS)), dtype=np.float32)
    for train, held in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        weights, bias = fit_logistic(x[train], y[train], c=c, seed=seed)
        logits[held] = x[held] @ weights + bias
    return logits


def train_head(
    data: Path, embedder: Embedder, *, seed: int = 0, folds: int = 5, c: float = DEFAULT_C
) -> tuple[GatingHead, TrainReport]:
    """Cross-validate, calibrate on out-of-fold logits, then fit the head on all of `data`.

    Raises:
        GatingError: the data file is malformed (see `load_labelled`).
    """
    started = time.monotonic()
    texts, labels = load_labelled(data)
    y = np.array([LABELS.index(label) for label in labels])
    x = features_of(embedder.embed(texts), texts)
    dim = x.shape[1] - len(FEATURES)

    oof = _out_of_fold_logits(x, y, folds=folds, c=c, seed=seed)
    temperature = fit_temperature(oof, y)
    embedding_only = _out_of_fold_logits(x[:, :dim], y, folds=folds, c=c, seed=seed)
    signals_only = _out_of_fold_logits(x[:, dim:], y, folds=folds, c=c, seed=seed)

    def nll(logits: np.ndarray) -> float:
        return float(-np.mean(np.log(softmax(logits)[np.arange(len(y)), y] + 1e-12)))

    predicted = oof.argmax(axis=1)
    weights, bias = fit_logistic(x, y, c=c, seed=seed)
    report = TrainReport(
        n=len(y),
        folds=folds,
        cv_macro_f1=macro_f1(y, predicted),
        cv_accuracy=float(np.mean(predicted == y)),
        cv_macro_f1_embedding_only=macro_f1(y, embedding_only.argmax(axis=1)),
        cv_macro_f1_signals_only=macro_f1(y, signals_only.argmax(axis=1)),
        temperature=temperature,
        nll_before=nll(oof),
        nll_after=nll(oof / temperature),
        seconds=time.monotonic() - started,
    )
    meta = {
        "data": data.name,
        "data_sha256": data_sha256(data),
        "seed": seed,
        "c": c,
        "embedder": embedder.kind,
        "embedder_model": "all-MiniLM-L6-v2",
        "embedder_max_tokens": embedder.max_tokens,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cv": report.as_dict(),
    }
    return GatingHead(weights=weights, bias=bias, temperature=temperature, meta=meta), report
