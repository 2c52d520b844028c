"""Score a router on any `{text, label}` JSONL: accuracy, macro-F1, per-class P/R/F1, confusion, latency, and the
same prompts perturbed (typos, casing, whitespace) — `chimera eval router`."""

import random
import statistics
import time
from typing import Any

from chimera.messages import ChatMessage
from chimera.models.router.base import Router
from chimera.models.router.gating import LABELS


def perturb(text: str, rng: random.Random) -> str:
    """The text as a hurried user types it: a few typos, odd casing, messy whitespace. Deterministic per `rng`."""
    words = text.split(" ")
    out = []
    for word in words:
        roll = rng.random()
        if len(word) > 3 and roll < 0.08:  # swap two neighbouring letters
            i = rng.randrange(len(word) - 1)
            word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif len(word) > 3 and roll < 0.12:  # drop a letter
            i = rng.randrange(len(word))
            word = word[:i] + word[i + 1 :]
        elif roll < 0.2:
            word = word.upper() if rng.random() < 0.5 else word.lower()
        out.append(word)
    spaced = "".join(w + (" " * rng.choice((1, 1, 1, 2, 3))) for w in out).rstrip()
    return rng.choice(("", " ", "\n", "  ")) + (spaced.capitalize() if rng.random() < 0.3 else spaced) + "\n"


def scores(y_true: list[str], y_pred: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes present, per-class precision/recall/F1/support, confusion."""
    labels = [label for label in LABELS if label in set(y_true) | set(y_pred)]
    confusion = {t: {p: 0 for p in labels} for t in labels}
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[t][p] += 1
    per_class = {}
    for label in labels:
        tp = confusion[label][label]
        predicted = sum(confusion[t][label] for t in labels)
        support = sum(confusion[label].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [c for c in per_class.values() if c["support"]]
    return {
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
        "macro_f1": statistics.fmean(c["f1"] for c in present),
        "per_class": per_class,
        "confusion": confusion,
    }


def _route_all(router: Router, texts: list[str]) -> tuple[list[str], list[float], float]:
    """Predictions, decision latencies (ms) and the share of decisions a cascade's deep stage made."""
    predictions, latencies, deep = [], [], 0
    for text in texts:
        began = time.perf_counter()
        decision = router.route([ChatMessage(role="user", content=text)])
        latencies.append(1000 * (time.perf_counter() - began))
        predictions.append(decision.expert)
        deep += decision.deep
    return predictions, latencies, deep / max(len(texts), 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def evaluate_router(router: Router, texts: list[str], labels: list[str], *, seed: int = 0) -> dict[str, Any]:
    """Route every text once as a new conversation (cold: each text is embedded for the first time)."""
    predictions, latencies, deep_share = _route_all(router, texts)
    rng = random.Random(seed)
    perturbed_predictions, _, _ = _route_all(router, [perturb(t, rng) for t in texts])
    report = {"n": len(texts), **scores(labels, predictions), "deep_share": deep_share}
    report["latency_ms"] = {
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "mean": statistics.fmean(latencies),
    }
    perturbed = scores(labels, perturbed_predictions)
    report["perturbed_macro_f1"] = perturbed["macro_f1"]
    report["perturbed_accuracy"] = perturbed["accuracy"]
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a human reads it."""
    lines = [
        f"n={report['n']}",
        f"perturbed (typos, casing, whitespace): macro-F1={report['perturbed_macro_f1']:.4f} "
        f"({report['perturbed_macro_f1'] - report['macro_f1']:+.4f})",
        f"decision latency: p50={report['latency_ms']['p50']:.2f} ms  p99={report['latency_ms']['p99']:.2f} ms  "
        f"(deep stage: {report['deep_share']:.1%} of decisions)",
    ]
    return "\n".join(lines) + "\n" + format_scores(report)


def format_scores(report: dict[str, Any]) -> str:
    """Accuracy, macro-F1, the per-class table and the confusion matrix of `scores(...)`."""
    labels = list(report["per_class"])
    lines = [
        f"accuracy={report['accuracy']:.4f}  macro-F1={report['macro_f1']:.4f}",
        f"{'class':<8}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for label, c in report["per_class"].items():
        lines.append(f"{label:<8}{c['precision']:>10.4f}{c['recall']:>10.4f}{c['f1']:>10.4f}{c['support']:>9}")
    lines += ["confusion (rows: true, columns: predicted)", " " * 8 + "".join(f"{p:>8}" for p in labels)]
    for t in labels:
        lines.append(f"{t:<8}" + "".join(f"{report['confusion'][t][p]:>8}" for p in labels))
    return "\n".join(lines)
