"""Train and cross-validate the guard classifiers on `{text, label, source}` JSONL files (`chimera guard train`).

Two kinds of folds. `cv="source"` (leave-one-source-out) holds out each data set in turn (`data.source_family`), so
every score comes from models that never saw that data set's style: the way a new attack family, or a company's own
harmless traffic, meets the rails. `cv=<k>` is k-fold CV stratified by label; it flatters, because folds share
sources. Both keep identical texts in one fold. Thresholds are chosen on out-of-fold scores to maximise detection
within the false-positive budget (overall, and per benign source); the reported CV figures choose each fold's
thresholds on the other folds' scores only.
"""

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from chimera.guardrails.classifier import TASKS, GuardHeads, TaskHead, mix_scores
from chimera.guardrails.data import GuardExample, load_benign, load_examples, source_family
from chimera.guardrails.features import SHALLOW_LAYERS, SHALLOW_TOKENS, GuardFeatures, GuardFeaturizer
from chimera.guardrails.metrics import rates
from chimera.guardrails.normalize import for_detection
from chimera.guardrails.patterns import JAILBREAK_TEMPLATES, first_match

if TYPE_CHECKING:
    from scipy import sparse

#: Inverse regularisation of both logistic regressions (sklearn's C).
LEXICAL_C = 4.0
SEMANTIC_C = 4.0
#: Weight of the lexical model in each task's mix (leave-one-source-out on dev + extra: 0.5 beat either alone).
MIX = 0.5
#: What the thresholds aim for (the issue's targets) and the budget they must stay within.
TARGETS = {"jailbreak": 0.90, "harmful": 0.90}
MAX_FALSE_POSITIVES = 0.03
MAX_SOURCE_FALSE_POSITIVES = 0.05
MIN_SOURCE_SIZE = 100  # 5 % of a smaller benign source is a handful of prompts: too noisy to constrain a threshold
#: Which labels each task learns to tell apart (harmful requests are not contrasted with jailbreaks: most carry one).
NEGATIVES = {"jailbreak": ("benign", "harmful"), "harmful": ("benign",)}
Folds = int | Literal["source"]


@dataclass(frozen=True)
class TrainReport:
    """What training measured; `cv` has the same shape as `chimera eval guard`'s report (with `cv="source"` its
    `by_source` is per held-out data set)."""

    n: int
    folds: Folds
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
    families: np.ndarray  # (N,) str: the data set each row belongs to
    template: np.ndarray  # (N,) bool: a jailbreak template matched
    groups: np.ndarray  # (N,) int: identical texts share a group


def train_guard(
    data: Sequence[Path],
    featurizer: GuardFeaturizer | None = None,
    *,
    benign: Sequence[Path] = (),
    folds: Folds = "source",
    seed: int = 0,
) -> tuple[GuardHeads, TrainReport]:
    """Cross-validate, choose thresholds, then fit both tasks' models on all of `data` (and `benign`).

    Args:
        data: `{text, label, source}` JSONL files.
        featurizer: the features (default: the packaged MiniLM's).
        benign: more files of harmless prompts (`{text}` JSONL), labelled benign (see `data.load_benign`).
        folds: `"source"` (leave one data set out) or a number of label-stratified folds.
        seed: of the folds and the models.

    Raises:
        GuardDataError: a data file is malformed.
    """
    started = time.monotonic()
    featurizer = featurizer or GuardFeaturizer()
    examples = [e for path in data for e in load_examples(path)]
    d = _prepare([*examples, *(e for path in benign for e in load_benign(path))], featurizer)
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
    scored = d.examples if folds != "source" else [
        GuardExample(e.text, e.label, family) for e, family in zip(d.examples, d.families, strict=True)
    ]  # fmt: skip
    report = TrainReport(n=len(d.labels), folds=folds, cv=rates(scored, flagged.tolist(), fold_rails),
                         thresholds=thresholds, seconds=time.monotonic() - started)  # fmt: skip
    meta = {
        "data": {p.name: _sha256(p) for p in data},
        "benign": {f"{p.parent.name}/{p.name}": _sha256(p) for p in benign},
        "seed": seed,
        "lexical_c": LEXICAL_C,
        "semantic_c": SEMANTIC_C,
        "model": "all-MiniLM-L6-v2",
        "shallow_layers": SHALLOW_LAYERS,
        "shallow_tokens": SHALLOW_TOKENS,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cv": report.as_dict(),
    }
    return GuardHeads(heads=final, meta=meta), report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare(examples: list[GuardExample], featurizer: GuardFeaturizer) -> _Data:
    texts = [for_detection(e.text) for e in examples]
    digests = [hashlib.blake2b(t.lower().encode(), digest_size=8).digest() for t in texts]
    index = {digest: i for i, digest in enumerate(dict.fromkeys(digests))}
    return _Data(
        examples=examples,
        features=featurizer.features(texts),
        labels=np.array([e.label for e in examples]),
        families=np.array([source_family(e.source) for e in examples]),
        template=np.array([first_match(JAILBREAK_TEMPLATES, t) is not None for t in texts]),
        groups=np.array([index[digest] for digest in digests]),
    )


def _splits(d: _Data, folds: Folds, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(seen, held) row indices per fold; an identical text is held out wherever any copy of it is."""
    if folds == "source":
        everything = np.arange(len(d.labels))
        splits = []
        for family in np.unique(d.families):
            held = np.isin(d.groups, d.groups[d.families == family])
            splits.append((everything[~held], everything[held & (d.families == family)]))
        return splits
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

    rows = rows[np.isin(d.labels[rows], (task, *NEGATIVES[task]))]
    y = (d.labels[rows] == task).astype(int)
    lexical = LogisticRegression(C=LEXICAL_C, max_iter=3000, class_weight="balanced", random_state=seed)
    lexical.fit(_lexical_matrix(d.features, rows, featurizer.lexical_size), y)
    semantic = LogisticRegression(C=SEMANTIC_C, max_iter=3000, class_weight="balanced", random_state=seed)
    semantic.fit(d.features.shallow[rows].numpy(), y)
    coef = lexical.coef_[0].astype(np.float32)
    bag = coef[featurizer.dim :]
    nonzero = np.flatnonzero(bag)
    return {
        "lexical_static": coef[: featurizer.dim],
        "lexical_index": nonzero.astype(np.int64),
        "lexical_weight": bag[nonzero],
        "lexical_bias": float(lexical.intercept_[0]),
        "semantic_weight": semantic.coef_[0].astype(np.float32),
        "semantic_bias": float(semantic.intercept_[0]),
    }


def _out_of_fold(
    d: _Data, featurizer: GuardFeaturizer, task: str, splits: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's lexical and semantic scores from the models of the fold that did not see it.  # -> (N,), (N,)"""
    import torch

    from chimera.guardrails.classifier import TaskScorer

    lexical, semantic = np.zeros(len(d.labels), np.float32), np.zeros(len(d.labels), np.float32)
    for seen, held in splits:
        fitted = _fit(d, featurizer, task, seen, seed)
        head = TaskHead(**fitted, center=(0.0, 0.0), scale=(1.0, 1.0), mix=MIX, threshold=0.0)
        part = GuardFeatures(static=d.features.static[torch.from_numpy(held)],
                             shallow=d.features.shallow[torch.from_numpy(held)],
                             pieces=[d.features.pieces[i] for i in held])  # fmt: skip
        lexical[held], semantic[held] = TaskScorer(head, featurizer.lexical_size).raw(part)
    return lexical, semantic


def _normalised(d: _Data, raw: tuple[np.ndarray, np.ndarray]) -> TaskHead:
    """A placeholder head holding the benign centre and scale of both models' out-of-fold scores."""
    benign = d.labels == "benign"
    center = (float(np.median(raw[0][benign])), float(np.median(raw[1][benign])))
    scale = (float(raw[0][benign].std()) or 1.0, float(raw[1][benign].std()) or 1.0)
    empty = np.zeros(0, np.float32)
    return TaskHead(lexical_static=empty, lexical_index=empty.astype(np.int64), lexical_weight=empty,
                    lexical_bias=0.0, semantic_weight=empty, semantic_bias=0.0,
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
    labels = d.labels[rows]
    jb, harm, template = scores["jailbreak"][rows], scores["harmful"][rows], d.template[rows]
    benign = labels == "benign"
    names, source = np.unique([d.examples[i].source for i in rows[benign]], return_inverse=True)
    size = np.bincount(source, minlength=len(names))
    budgeted = size >= MIN_SOURCE_SIZE
    grid = np.linspace(0.9, 1.0, 41)
    best: tuple[float, float, float, float] | None = None
    for tj in np.unique(np.quantile(jb[benign], grid)):
        flag_j = template | (jb > tj)
        for th in np.unique(np.quantile(harm[benign], grid)):
            flag = flag_j | (harm > th)
            fp = float(flag[benign].mean())
            per_source = np.bincount(source, weights=flag[benign], minlength=len(names)) / size
            if fp > MAX_FALSE_POSITIVES or (per_source[budgeted] > MAX_SOURCE_FALSE_POSITIVES).any():
                continue
            worth = min(flag[labels == task].mean() / TARGETS[task] for task in TASKS)
            if best is None or (worth, -fp) > (best[0], -best[1]):
                best = (worth, fp, float(tj), float(th))
    if best is None:  # not even the strictest grid point fits the budget: flag nothing by the classifiers
        return {"jailbreak": float(jb.max()), "harmful": float(harm.max())}
    return {"jailbreak": best[2], "harmful": best[3]}
