"""Train and cross-validate the guard classifiers on a `{text, label, source}` JSONL file (`chimera guard train`).

Folds group identical texts (the attack sets repeat prompts), so no prompt is scored by a model that saw it.
Thresholds are chosen on out-of-fold scores to maximise detection subject to the false-positive budget (overall,
and per benign source); the reported CV figures choose each fold's thresholds on the other folds' scores only.
"""

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chimera.guardrails.classifier import TASKS, GuardHeads, TaskHead, mix_scores
from chimera.guardrails.data import GuardExample, load_benign, load_examples
from chimera.guardrails.features import SHALLOW_LAYERS, SHALLOW_TOKENS, GuardFeatures, GuardFeaturizer
from chimera.guardrails.metrics import rates
from chimera.guardrails.normalize import for_detection
from chimera.guardrails.patterns import JAILBREAK_TEMPLATES, first_match

if TYPE_CHECKING:
    from scipy import sparse

#: Inverse regularisation of both models (sklearn's C), chosen by 5-fold CV on the dev data.
LEXICAL_C = 16.0
KERNEL_C = 16.0
#: Weight of the lexical model in each task's mix (dev CV: 0.5 beat 0.25 and 0.75 on both tasks).
MIX = 0.5
#: What the thresholds aim for (the issue's targets) and the budget they must stay within.
TARGETS = {"jailbreak": 0.97, "harmful": 0.90}
MAX_FALSE_POSITIVES = 0.02
MAX_SOURCE_FALSE_POSITIVES = 0.05
MIN_SOURCE_SIZE = 20  # smaller benign sources are too noisy to constrain a threshold
#: Which labels each task learns to tell apart (harmful requests are not contrasted with jailbreaks: most carry one).
NEGATIVES = {"jailbreak": ("benign", "harmful"), "harmful": ("benign",)}


@dataclass(frozen=True)
class TrainReport:
    """What training measured; `cv` has the same shape as `chimera eval guard`'s report."""

    n: int
    folds: int
    cv: dict[str, Any]
    thresholds: dict[str, float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Data:
    examples: list[GuardExample]
    features: GuardFeatures
    labels: np.ndarray  # (N,) str
    template: np.ndarray  # (N,) bool: a jailbreak template matched
    groups: np.ndarray  # (N,) int: identical texts share a group


def train_guard(
    data: Path,
    featurizer: GuardFeaturizer | None = None,
    *,
    benign: Sequence[Path] = (),
    folds: int = 5,
    seed: int = 0,
) -> tuple[GuardHeads, TrainReport]:
    """Cross-validate, choose thresholds, then fit both tasks' models on all of `data` (and `benign`).

    Args:
        data: `{text, label, source}` JSONL.
        featurizer: the features (default: the packaged MiniLM's).
        benign: more files of harmless prompts (`{text}` JSONL), labelled benign (see `data.load_benign`).
        folds: cross-validation folds.
        seed: of the folds and the models.

    Raises:
        GuardDataError: a data file is malformed.
    """
    started = time.monotonic()
    featurizer = featurizer or GuardFeaturizer()
    d = _prepare([*load_examples(data), *(e for path in benign for e in load_benign(path))], featurizer)
    splits = _splits(d, folds, seed)
    oof = {task: _out_of_fold(d, featurizer, task, splits, seed) for task in TASKS}
    heads = {task: _normalised(d, oof[task]) for task in TASKS}
    scores = {task: mix_scores(heads[task], *oof[task]) for task in TASKS}

    flagged = np.zeros(len(d.labels), dtype=bool)
    fold_rails: list[str | None] = [None] * len(d.labels)
    for _, held in splits:
        rest = np.setdiff1d(np.arange(len(d.labels)), held)
        chosen = choose_thresholds(d, scores, rest)
        hit, rail = _flags(d, scores, chosen, held)
        flagged[held] = hit
        for i, r in zip(held, rail, strict=True):
            fold_rails[i] = r
    thresholds = choose_thresholds(d, scores, np.arange(len(d.labels)))

    final = {}
    for task in TASKS:
        fitted = _fit(d, featurizer, task, np.arange(len(d.labels)), seed)
        final[task] = TaskHead(**{**heads[task].__dict__, **fitted, "threshold": thresholds[task]})
    report = TrainReport(n=len(d.labels), folds=folds, cv=rates(d.examples, flagged.tolist(), fold_rails),
                         thresholds=thresholds, seconds=time.monotonic() - started)  # fmt: skip
    meta = {
        "data": data.name,
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "benign": {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in benign},
        "seed": seed,
        "lexical_c": LEXICAL_C,
        "kernel_c": KERNEL_C,
        "model": "all-MiniLM-L6-v2",
        "shallow_layers": SHALLOW_LAYERS,
        "shallow_tokens": SHALLOW_TOKENS,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cv": report.as_dict(),
    }
    return GuardHeads(heads=final, meta=meta), report


def _prepare(examples: list[GuardExample], featurizer: GuardFeaturizer) -> _Data:
    texts = [for_detection(e.text) for e in examples]
    digests = [hashlib.blake2b(t.lower().encode(), digest_size=8).digest() for t in texts]
    index = {digest: i for i, digest in enumerate(dict.fromkeys(digests))}
    return _Data(
        examples=examples,
        features=featurizer.features(texts),
        labels=np.array([e.label for e in examples]),
        template=np.array([first_match(JAILBREAK_TEMPLATES, t) is not None for t in texts]),
        groups=np.array([index[digest] for digest in digests]),
    )


def _splits(d: _Data, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(d.labels)), d.labels, d.groups))


def _lexical_matrix(features: GuardFeatures, rows: np.ndarray, lexical_size: int) -> "sparse.csr_matrix":
    """[static vector | word-piece bag] of `rows` as one sparse matrix.  # -> (R, D + F)"""
    from scipy import sparse

    bags = [features.pieces[i] for i in rows]
    indptr = np.cumsum([0, *(len(idx) for idx, _ in bags)])
    indices = np.concatenate([idx for idx, _ in bags]) if bags else np.zeros(0, dtype=np.int64)
    values = np.concatenate([v for _, v in bags]) if bags else np.zeros(0, dtype=np.float32)
    bag = sparse.csr_matrix((values, indices, indptr), shape=(len(rows), lexical_size))
    return sparse.hstack([sparse.csr_matrix(features.static[rows].numpy()), bag]).tocsr()


def _fit(d: _Data, featurizer: GuardFeaturizer, task: str, rows: np.ndarray, seed: int) -> dict[str, Any]:
    """Both models of `task` on `rows` (restricted to the task's labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    rows = rows[np.isin(d.labels[rows], (task, *NEGATIVES[task]))]
    y = (d.labels[rows] == task).astype(int)
    lexical = LogisticRegression(C=LEXICAL_C, max_iter=3000, class_weight="balanced", random_state=seed)
    lexical.fit(_lexical_matrix(d.features, rows, featurizer.lexical_size), y)
    kernel = SVC(C=KERNEL_C, kernel="rbf", gamma="scale", class_weight="balanced", random_state=seed)
    kernel.fit(d.features.shallow[rows].numpy(), y)
    coef = lexical.coef_[0].astype(np.float32)
    bag = coef[featurizer.dim :]
    nonzero = np.flatnonzero(bag)
    return {
        "lexical_static": coef[: featurizer.dim],
        "lexical_index": nonzero.astype(np.int64),
        "lexical_weight": bag[nonzero],
        "lexical_bias": float(lexical.intercept_[0]),
        "support": kernel.support_vectors_.astype(np.float32),
        "dual": kernel.dual_coef_[0].astype(np.float32),
        "kernel_bias": float(kernel.intercept_[0]),
        "gamma": float(kernel._gamma),
    }


def _out_of_fold(
    d: _Data, featurizer: GuardFeaturizer, task: str, splits: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's lexical and kernel scores from the models of the folds that did not see it.  # -> (N,), (N,)"""
    import torch

    from chimera.guardrails.classifier import TaskScorer

    lexical, kernel = np.zeros(len(d.labels), np.float32), np.zeros(len(d.labels), np.float32)
    for seen, held in splits:
        fitted = _fit(d, featurizer, task, seen, seed)
        head = TaskHead(**fitted, center=(0.0, 0.0), scale=(1.0, 1.0), mix=MIX, threshold=0.0)
        part = GuardFeatures(static=d.features.static[torch.from_numpy(held)],
                             shallow=d.features.shallow[torch.from_numpy(held)],
                             pieces=[d.features.pieces[i] for i in held])  # fmt: skip
        lexical[held], kernel[held] = TaskScorer(head, featurizer.lexical_size).raw(part)
    return lexical, kernel


def _normalised(d: _Data, raw: tuple[np.ndarray, np.ndarray]) -> TaskHead:
    """A placeholder head holding the benign centre and scale of both models' out-of-fold scores."""
    benign = d.labels == "benign"
    center = (float(np.median(raw[0][benign])), float(np.median(raw[1][benign])))
    scale = (float(raw[0][benign].std()) or 1.0, float(raw[1][benign].std()) or 1.0)
    empty = np.zeros(0, np.float32)
    return TaskHead(lexical_static=empty, lexical_index=empty.astype(np.int64), lexical_weight=empty,
                    lexical_bias=0.0, support=empty.reshape(0, 0), dual=empty, kernel_bias=0.0, gamma=0.0,
                    center=center, scale=scale, mix=MIX, threshold=0.0)  # fmt: skip


def _flags(
    d: _Data, scores: dict[str, np.ndarray], thresholds: dict[str, float], rows: np.ndarray
) -> tuple[np.ndarray, list[str | None]]:
    """Whether each of `rows` is flagged, and by which rail first (template, then jailbreak, then harmful)."""
    rails: list[str | None] = []
    for i in rows:
        if d.template[i]:
            rails.append("jailbreak_template")
        elif scores["jailbreak"][i] > thresholds["jailbreak"]:
            rails.append("jailbreak_classifier")
        elif scores["harmful"][i] > thresholds["harmful"]:
            rails.append("harmful_classifier")
        else:
            rails.append(None)
    return np.array([r is not None for r in rails]), rails


def choose_thresholds(d: _Data, scores: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, float]:
    """Thresholds that maximise min(detection / target) over the two tasks within the false-positive budget."""
    labels, sources = d.labels[rows], np.array([d.examples[i].source for i in rows])
    jb, harm, template = scores["jailbreak"][rows], scores["harmful"][rows], d.template[rows]
    benign = labels == "benign"
    budget = [(sources == s) & benign for s in np.unique(sources[benign])]
    budget = [m for m in budget if m.sum() >= MIN_SOURCE_SIZE]
    grid = np.linspace(0.9, 1.0, 81)
    best: tuple[float, float, float, float] | None = None
    for tj in np.unique(np.quantile(jb[benign], grid)):
        flag_j = template | (jb > tj)
        for th in np.unique(np.quantile(harm[benign], grid)):
            flag = flag_j | (harm > th)
            fp = float(flag[benign].mean())
            if fp > MAX_FALSE_POSITIVES or any(flag[m].mean() > MAX_SOURCE_FALSE_POSITIVES for m in budget):
                continue
            worth = min(flag[labels == task].mean() / TARGETS[task] for task in TASKS)
            if best is None or (worth, -fp) > (best[0], -best[1]):
                best = (worth, fp, float(tj), float(th))
    if best is None:  # not even the strictest grid point fits the budget: flag nothing by the classifiers
        return {"jailbreak": float(jb.max()), "harmful": float(harm.max())}
    return {"jailbreak": best[2], "harmful": best[3]}
