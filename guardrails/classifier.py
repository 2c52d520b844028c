"""The jailbreak and harmful-request classifiers: two small heads over `GuardFeatures`, saved in one `.npz`.

Each task's score mixes two models, each z-scored against benign prompts' out-of-fold scores:
- a logistic regression on the static MiniLM vector and the word-piece bag (lexical: templates, wording);
- a logistic regression on the shallow MiniLM vector (meaning: "how do I kill a process" vs "how do I kill a man").
Both are linear, so that leave-one-source-out training (`chimera guard train --cv source`: one fit per source, dozens
of them) stays affordable on a laptop; the RBF SVM that used to be the second model is too slow to fit that often.
A text is flagged when its mixed score exceeds the task's threshold, chosen by cross-validation
(`chimera guard train`). Scoring runs in torch, not numpy's BLAS (see `DenseIndex.scores` for why).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chimera.guardrails.errors import GuardModelError
from chimera.guardrails.features import SHALLOW_LAYERS, SHALLOW_TOKENS, GuardFeatures

TASKS = ("jailbreak", "harmful")
ARTIFACTS = Path(__file__).parent / "artifacts"
PACKAGED_HEADS = ARTIFACTS / "guard-heads.npz"


@dataclass(frozen=True)
class TaskHead:
    """One task's two models, their benign-score normalisation, the mix and the threshold."""

    lexical_static: np.ndarray  # (D,) weights of the static vector
    lexical_index: np.ndarray  # (K,) int64: word-piece features with a non-zero weight
    lexical_weight: np.ndarray  # (K,) their weights
    lexical_bias: float
    semantic_weight: np.ndarray  # (D,) weights of the shallow vector
    semantic_bias: float
    center: tuple[float, float]  # benign median of (lexical, semantic) out-of-fold scores
    scale: tuple[float, float]  # benign standard deviation of the same
    mix: float  # weight of the lexical z-score (the semantic one's is 1 - mix)
    threshold: float  # flagged above this mixed score

    def arrays(self, task: str) -> dict[str, np.ndarray]:
        p = f"{task}."
        return {p + "lexical_static": self.lexical_static.astype(np.float32),
                p + "lexical_index": self.lexical_index.astype(np.int64),
                p + "lexical_weight": self.lexical_weight.astype(np.float32),
                p + "semantic_weight": self.semantic_weight.astype(np.float32)}  # fmt: skip

    def scalars(self) -> dict[str, Any]:
        return {"lexical_bias": self.lexical_bias, "semantic_bias": self.semantic_bias,
                "center": list(self.center), "scale": list(self.scale), "mix": self.mix,
                "threshold": self.threshold}  # fmt: skip


@dataclass(frozen=True)
class GuardHeads:
    """The heads of both tasks plus what produced them (`meta`: data hash, seed, CV report)."""

    heads: dict[str, TaskHead]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "tasks": {task: head.scalars() for task, head in self.heads.items()}}
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for task, head in self.heads.items():
            arrays.update(head.arrays(task))
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> "GuardHeads":
        """Read heads written by `save`.

        Raises:
            GuardModelError: missing file, or not a guard heads file.
        """
        try:
            with np.load(path) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                heads = {}
                for task in TASKS:
                    s = meta["tasks"][task]
                    heads[task] = TaskHead(
                        lexical_static=data[f"{task}.lexical_static"],
                        lexical_index=data[f"{task}.lexical_index"],
                        lexical_weight=data[f"{task}.lexical_weight"],
                        lexical_bias=float(s["lexical_bias"]),
                        semantic_weight=data[f"{task}.semantic_weight"],
                        semantic_bias=float(s["semantic_bias"]),
                        center=(float(s["center"][0]), float(s["center"][1])),
                        scale=(float(s["scale"][0]), float(s["scale"][1])),
                        mix=float(s["mix"]),
                        threshold=float(s["threshold"]),
                    )
        except FileNotFoundError as e:
            raise GuardModelError(f"no guard heads at {path}; train them with `chimera guard train`") from e
        except (KeyError, ValueError, OSError, TypeError) as e:
            raise GuardModelError(f"{path} is not a guard heads file: {e}") from e
        trained_on = (meta.get("shallow_layers"), meta.get("shallow_tokens"))
        if trained_on != (SHALLOW_LAYERS, SHALLOW_TOKENS):  # scores of other features would be silently wrong
            raise GuardModelError(
                f"{path} was trained on {trained_on[0]} layers x {trained_on[1]} word pieces; this build computes "
                f"{SHALLOW_LAYERS} x {SHALLOW_TOKENS}: retrain with `chimera guard train`"
            )
        return cls(heads=heads, meta=meta)


class TaskScorer:
    """A `TaskHead` as torch tensors, ready to score `GuardFeatures`."""

    def __init__(self, head: TaskHead, lexical_size: int) -> None:
        import torch

        if head.lexical_index.size and int(head.lexical_index.max()) >= lexical_size:
            raise GuardModelError(f"the head has {int(head.lexical_index.max()) + 1} lexical features, the "
                                  f"featurizer {lexical_size}: they come from different models")  # fmt: skip
        self.head = head
        self._static = torch.from_numpy(head.lexical_static)  # (D,)
        self._lexical = torch.zeros(lexical_size)  # (F,) dense, for look-ups by index
        self._lexical[torch.from_numpy(head.lexical_index)] = torch.from_numpy(head.lexical_weight)
        self._semantic = torch.from_numpy(head.semantic_weight)  # (D,)

    def raw(self, features: GuardFeatures) -> tuple["np.ndarray", "np.ndarray"]:
        """Lexical and semantic decision values.  # -> (N,), (N,)"""
        import torch

        with torch.inference_mode():
            lexical = features.static @ self._static + self.head.lexical_bias  # (N, D) @ (D,) -> (N,)
            bag = torch.tensor([float((self._lexical[torch.from_numpy(i)] * torch.from_numpy(v)).sum())
                                for i, v in features.pieces])  # fmt: skip  # (N,)
            semantic = features.shallow @ self._semantic + self.head.semantic_bias  # (N, D) @ (D,) -> (N,)
        return (lexical + bag).numpy(), semantic.numpy()

    def scores(self, features: GuardFeatures) -> np.ndarray:
        """Mixed, normalised scores; above `head.threshold` means flagged.  # -> (N,)"""
        lexical, semantic = self.raw(features)
        return mix_scores(self.head, lexical, semantic)


def mix_scores(head: TaskHead, lexical: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """The task score from its two models' raw values.  # (N,), (N,) -> (N,)"""
    z_lexical = (lexical - head.center[0]) / head.scale[0]
    z_semantic = (semantic - head.center[1]) / head.scale[1]
    return (head.mix * z_lexical + (1.0 - head.mix) * z_semantic).astype(np.float32)
