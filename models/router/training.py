"""Train and cross-validate the gating heads on `{text, label, source}` JSONL files (`chimera router train`).

Two cross-validations: random stratified folds, and leave-one-source-out (each source held out in turn). Random
folds share sources between training and test and overstate; leave-one-source-out predicts prompts from sources
the head never saw, so with `cv="source"` it is the one that calibrates the heads and picks the cascade's margin.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from chimera.models.embedding.base import Embedder
from chimera.models.router.evaluation import scores
from chimera.models.router.gates import CascadeHead, top_two_gap
from chimera.models.router.gating import (
    LABELS,
    GatingError,
    GatingHead,
    LabelledPrompts,
    data_sha256,
    features_of,
    fit_class_calibration,
    fit_logistic,
    load_labelled,
    softmax,
)
from chimera.models.router.signals import FEATURES

#: Inverse L2 strength of the logistic regression (sklearn's C), chosen by leave-one-source-out CV on dev + extra.
DEFAULT_C = 4.0
#: Word pieces the cascade's transformer reads: its p99 is a long prompt's forward pass, so it reads fewer than the
#: static stage (which costs a table look-up per piece).
CONTEXTUAL_MAX_TOKENS = 128
#: The cascade sends at most this share of turns to the transformer, so its median decision stays a static one.
MAX_DEEP_SHARE = 1 / 3
_MARGINS = np.round(np.arange(0.05, 1.0, 0.05), 2)

CvScheme = Literal["random", "source"]
Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainReport:
    """What training measured, out of fold: per scheme, the scores of the head (or cascade) that ships."""

    n: int
    sources: int
    selected_by: str
    cv: dict[str, dict[str, Any]]
    parts_macro_f1: dict[str, float]
    calibration: dict[str, Any]
    cascade: dict[str, float] | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _splits(prompts: LabelledPrompts, y: np.ndarray, scheme: str, *, folds: int, seed: int) -> list[Split]:
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    if scheme == "source":
        return list(LeaveOneGroupOut().split(y, y, groups=prompts.sources))
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(y, y))


def _out_of_fold_logits(x: np.ndarray, y: np.ndarray, splits: list[Split], *, c: float, seed: int) -> np.ndarray:
    logits = np.zeros((len(y), len(LABELS)), dtype=np.float32)  # (N, K)
    for train, held in splits:
        weights, bias = fit_logistic(x[train], y[train], c=c, seed=seed)
        logits[held] = x[held] @ weights + bias
    return logits


def _named(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return scores([LABELS[i] for i in y], [LABELS[i] for i in predicted])


def _macro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    return float(_named(y, logits.argmax(axis=1))["macro_f1"])


def _nll(probabilities: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(len(y)), y] + 1e-12)))


def _calibrated(oof: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Out-of-fold P(expert) after the per-class calibration they ask for.  # (N, K) -> (N, K)"""
    scale, shift, _ = fit_class_calibration(oof, y)
    return softmax(oof * scale + shift)


def _calibrated_head(
    x: np.ndarray, y: np.ndarray, oof: np.ndarray, *, c: float, seed: int
) -> tuple[GatingHead, dict[str, Any]]:
    """The head fit on all rows, its logits scaled and shifted per class as the out-of-fold logits ask."""
    scale, shift, temperature = fit_class_calibration(oof, y)
    weights, bias = fit_logistic(x, y, c=c, seed=seed)
    calibration = {
        "kind": "per-class scale and shift of the logits, fit on out-of-fold logits",
        "scale": [round(float(v), 4) for v in scale],
        "shift": [round(float(v), 4) for v in shift],
        "global_temperature": temperature,
        "nll_raw": _nll(softmax(oof), y),
        "nll_temperature": _nll(softmax(oof / temperature), y),
        "nll_per_class": _nll(softmax(oof * scale + shift), y),
    }
    weights, bias = (weights * scale).astype(np.float32), (bias * scale + shift).astype(np.float32)  # (F, K), (K,)
    return GatingHead(weights=weights, bias=bias), calibration


def _meta(data: list[Path], kind: str, seed: int, c: float, max_tokens: int) -> dict[str, Any]:
    return {
        "data": "+".join(p.name for p in data),
        "data_sha256": data_sha256(data),
        "seed": seed,
        "c": c,
        "embedder": kind,
        "embedder_model": "all-MiniLM-L6-v2",
        "embedder_max_tokens": max_tokens,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _schemes(cv: CvScheme) -> list[str]:
    return ["random", "source"] if cv == "source" else ["random"]


def _cv_name(scheme: str, folds: int) -> str:
    return "leave_one_source_out" if scheme == "source" else f"random_{folds}_fold"


def _load(data: list[Path], cv: CvScheme) -> tuple[LabelledPrompts, np.ndarray]:
    """Raises: GatingError: malformed data, or a single source where `cv="source"` needs several."""
    prompts = load_labelled(data)
    if cv == "source" and len(set(prompts.sources)) < 2:
        raise GatingError("leave-one-source-out needs rows from at least two sources (a `source` field per row)")
    return prompts, np.array([LABELS.index(label) for label in prompts.labels])


def train_head(
    data: list[Path], embedder: Embedder, *, cv: CvScheme = "random", seed: int = 0, folds: int = 5,
    c: float = DEFAULT_C,
) -> tuple[GatingHead, TrainReport]:  # fmt: skip
    """Cross-validate one head over `embedder` ⊕ signals, calibrate it on the `cv` scheme's out-of-fold logits.

    Raises:
        GatingError: the data files are malformed (see `load_labelled`).
    """
    started = time.monotonic()
    prompts, y = _load(data, cv)
    x = features_of(embedder.embed(prompts.texts), prompts.texts)  # (N, D + S)
    dim = x.shape[1] - len(FEATURES)
    oof = {s: _out_of_fold_logits(x, y, _splits(prompts, y, s, folds=folds, seed=seed), c=c, seed=seed)
           for s in _schemes(cv)}  # fmt: skip
    selected = _splits(prompts, y, cv, folds=folds, seed=seed)
    head, calibration = _calibrated_head(x, y, oof[cv], c=c, seed=seed)
    report = TrainReport(
        n=len(y),
        sources=len(set(prompts.sources)),
        selected_by=_cv_name(cv, folds),
        cv={_cv_name(s, folds): _named(y, _calibrated(logits, y).argmax(axis=1)) for s, logits in oof.items()},
        parts_macro_f1={
            "embedding_only": _macro_f1(y, _out_of_fold_logits(x[:, :dim], y, selected, c=c, seed=seed)),
            "signals_only": _macro_f1(y, _out_of_fold_logits(x[:, dim:], y, selected, c=c, seed=seed)),
        },
        calibration=calibration,
        cascade=None,
        seconds=time.monotonic() - started,
    )
    meta = {**_meta(data, embedder.kind, seed, c, embedder.max_tokens), "cv": report.as_dict()}
    return GatingHead(head.weights, head.bias, meta=meta), report


def train_cascade(
    data: list[Path], static: Embedder, contextual: Embedder, *, cv: CvScheme = "random", seed: int = 0,
    folds: int = 5, c: float = DEFAULT_C,
) -> tuple[CascadeHead, TrainReport]:  # fmt: skip
    """Train the static head and the deep head (static ⊕ contextual ⊕ signals); pick the margin out of fold.

    The margin is the one with the best out-of-fold macro-F1 of the cascade among those that send at most
    `MAX_DEEP_SHARE` of the turns to the transformer.

    Raises:
        GatingError: the data files are malformed (see `load_labelled`).
    """
    started = time.monotonic()
    prompts, y = _load(data, cv)
    static_vectors = static.embed(prompts.texts)  # (N, D)
    shallow_x = features_of(static_vectors, prompts.texts)  # (N, D + S)
    deep_x = features_of(np.hstack([static_vectors, contextual.embed(prompts.texts)]), prompts.texts)  # (N, 2D + S)

    logits = {}  # scheme -> out-of-fold logits of the static head and of the deep head
    for scheme in _schemes(cv):
        splits = _splits(prompts, y, scheme, folds=folds, seed=seed)
        logits[scheme] = (_out_of_fold_logits(shallow_x, y, splits, c=c, seed=seed),
                          _out_of_fold_logits(deep_x, y, splits, c=c, seed=seed))  # fmt: skip
    outcomes = {scheme: (_calibrated(s, y), _calibrated(d, y)) for scheme, (s, d) in logits.items()}
    shallow_head, shallow_calibration = _calibrated_head(shallow_x, y, logits[cv][0], c=c, seed=seed)
    deep_head, deep_calibration = _calibrated_head(deep_x, y, logits[cv][1], c=c, seed=seed)

    shallow_p, deep_p = outcomes[cv]
    gap = top_two_gap(shallow_p)  # (N,)

    def cascade_f1(margin: float) -> float:
        return _macro_f1(y, np.where((gap < margin)[:, None], deep_p, shallow_p))

    allowed = [float(m) for m in _MARGINS if np.mean(gap < m) <= MAX_DEEP_SHARE] or [float(_MARGINS[0])]
    margin = max(allowed, key=cascade_f1)
    cv_scores = {}
    for scheme, (s_p, d_p) in outcomes.items():
        deep = top_two_gap(s_p) < margin
        cv_scores[_cv_name(scheme, folds)] = _named(y, np.where(deep[:, None], d_p, s_p).argmax(axis=1))
    report = TrainReport(
        n=len(y),
        sources=len(set(prompts.sources)),
        selected_by=_cv_name(cv, folds),
        cv=cv_scores,
        parts_macro_f1={"static_head_alone": _macro_f1(y, shallow_p), "deep_head_alone": _macro_f1(y, deep_p)},
        calibration={"static": shallow_calibration, "deep": deep_calibration},
        cascade={"margin": margin, "deep_share": float(np.mean(gap < margin))},
        seconds=time.monotonic() - started,
    )
    meta = {**_meta(data, "cascade", seed, c, static.max_tokens), "contextual_max_tokens": contextual.max_tokens,
            "cascade_margin": margin, "cv": report.as_dict()}  # fmt: skip
    shallow = GatingHead(shallow_head.weights, shallow_head.bias, meta={"stage": "static"})
    deep = GatingHead(deep_head.weights, deep_head.bias, meta={**meta, "stage": "deep"})
    return CascadeHead(shallow, deep, margin), report
