"""Precision and recall of PII masking on labelled texts (`chimera eval pii`), and whether it leaves code alone.

The data is JSONL, one text a line: `{"id": "...", "text": "...", "code": false, "pii": [{"kind": "EMAIL_ADDRESS",
"text": "ada@example.org"}]}`. `pii` lists the personal data in the text (every occurrence of each `text` counts),
`code` says the item holds code (fenced, inline or bare), where nothing but the labelled PII may change: a code
item with any other detection counts as corrupted. `id` defaults to `line N`. A detection
counts as found when it overlaps a labelled span of the same kind; labels of kinds the masker is not configured for
are left out of the scores (and counted).
"""

import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.guardrails.errors import GuardDataError
from chimera.guardrails.pii import SUPPORTED_ENTITIES, PiiMasker, PiiSpan
from chimera.guardrails.streaming import StreamMasker
from chimera.jsonl import json_objects

#: Delta sizes the streamed masking is checked with, against masking the whole text.
STREAM_DELTAS = (3, 11)
_LISTED = 20  # false positives and misses named in the report, at most


@dataclass(frozen=True)
class LabelledSpan:
    """`text[start:end]` is personal data of `kind`."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class PiiExample:
    """One labelled text."""

    id: str
    text: str
    code: bool
    spans: tuple[LabelledSpan, ...]


def load_pii_examples(path: Path) -> list[PiiExample]:
    """Read a labelled JSONL file (blank lines skipped).

    Raises:
        GuardDataError: a missing or unreadable file, or a line that is not such an object, as `file:line`.
    """
    examples = [_example(path, n, row) for n, row in json_objects(path, GuardDataError)]
    if not examples:
        raise GuardDataError(f"{path}: no examples")
    return examples


def _example(path: Path, n: int, row: dict[str, Any]) -> PiiExample:
    where = f"{path}:{n}"
    missing = [key for key in ("text", "pii") if key not in row]
    if missing:
        raise GuardDataError(f"{where}: missing {', '.join(f'`{k}`' for k in missing)}")
    text, labels, code, name = row["text"], row["pii"], row.get("code", False), row.get("id", f"line {n}")
    if not isinstance(text, str) or not isinstance(name, str) or not isinstance(code, bool):
        raise GuardDataError(f"{where}: `text` and `id` must be strings, `code` a boolean")
    if not isinstance(labels, list):
        raise GuardDataError(f"{where}: `pii` must be a list of {{kind, text}}")
    spans: list[LabelledSpan] = []
    for label in labels:
        if not isinstance(label, dict) or not isinstance(label.get("text"), str) or not label["text"]:
            raise GuardDataError(f"{where}: each `pii` entry needs a non-empty string `text` and a `kind`")
        kind, value = label.get("kind"), label["text"]
        if not isinstance(kind, str) or kind not in SUPPORTED_ENTITIES:
            raise GuardDataError(f"{where}: kind {kind!r} is not one of {', '.join(SUPPORTED_ENTITIES)}")
        starts = [i for i in range(len(text)) if text.startswith(value, i)]
        if not starts:
            raise GuardDataError(f"{where}: labelled text {value!r} does not occur in `text`")
        spans += [LabelledSpan(i, i + len(value), kind) for i in starts]
    return PiiExample(name, text, code, tuple(sorted(set(spans), key=lambda s: (s.start, s.end))))


def evaluate_pii(masker: PiiMasker, examples: list[PiiExample], *, stream_window: int = 64) -> dict[str, Any]:
    """Score `masker` on the examples: precision, recall and F1 (overall and per kind), labelled PII left
    visible, code items changed, and texts whose streamed masking differs from masking them whole."""
    configured = set(masker.entities)
    expected_n: Counter[str] = Counter()
    found_n: Counter[str] = Counter()
    matched_found: Counter[str] = Counter()
    matched_expected: Counter[str] = Counter()
    leaked, not_configured, stream_mismatches = 0, 0, 0
    code_corrupted: list[str] = []
    false_positives: list[dict[str, str]] = []
    missed: list[dict[str, str]] = []
    for example in examples:
        expected = [s for s in example.spans if s.kind in configured]
        not_configured += len(example.spans) - len(expected)
        found = masker.find(example.text)
        hits = [_matches(f, expected) for f in found]
        for span, hit in zip(found, hits, strict=True):
            found_n[span.kind] += 1
            matched_found[span.kind] += hit
            if not hit:
                false_positives.append(_named(example, span.start, span.end, span.kind))
        for span in expected:
            expected_n[span.kind] += 1
            if any(f.kind == span.kind and _overlap(f, span) for f in found):
                matched_expected[span.kind] += 1
            else:
                missed.append(_named(example, span.start, span.end, span.kind))
            covered = sum(max(0, min(f.end, span.end) - max(f.start, span.start)) for f in found)
            leaked += covered < span.end - span.start
        if example.code and not all(hits):
            code_corrupted.append(example.id)
        whole = masker.mask(example.text, found)
        stream_mismatches += any(
            _streamed(masker, example.text, size, stream_window) != whole for size in STREAM_DELTAS
        )
    kinds = sorted(set(expected_n) | set(found_n))
    per_kind = {
        kind: _scores(matched_found[kind], found_n[kind], matched_expected[kind], expected_n[kind]) for kind in kinds
    }
    overall = _scores(sum(matched_found.values()), found_n.total(), sum(matched_expected.values()), expected_n.total())
    return {
        "n": len(examples),
        "entities": sorted(configured),
        **overall,
        "leaked": leaked,
        "labels_not_configured": not_configured,
        "code_items": sum(e.code for e in examples),
        "code_corrupted": len(code_corrupted),
        "code_corrupted_ids": code_corrupted,
        "stream_mismatches": stream_mismatches,
        "per_kind": per_kind,
        "false_positives": false_positives[:_LISTED],
        "missed": missed[:_LISTED],
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a human reads it."""
    lines = [
        f"n={report['n']}  entities: {', '.join(report['entities'])}",
        f"precision={report['precision']:.4f}  recall={report['recall']:.4f}  f1={report['f1']:.4f}  "
        f"(expected {report['expected']}, found {report['found']}, leaked {report['leaked']})",
        f"code items changed: {report['code_corrupted']} of {report['code_items']}  "
        f"streamed != whole: {report['stream_mismatches']}",
        "",
        f"{'kind':<16}{'precision':>10}{'recall':>8}{'expected':>10}{'found':>7}",
    ]
    for kind, row in report["per_kind"].items():
        lines.append(f"{kind:<16}{row['precision']:>10.4f}{row['recall']:>8.4f}{row['expected']:>10}{row['found']:>7}")
    for title, rows in (("false positives:", report["false_positives"]), ("missed:", report["missed"])):
        if rows:
            lines += ["", title] + [f"  {r['id']}: {r['kind']} {r['text']!r}" for r in rows]
    return "\n".join(lines)


def _scores(tp_found: int, found: int, tp_expected: int, expected: int) -> dict[str, Any]:
    # nothing found is perfect precision, nothing to find perfect recall
    precision = tp_found / found if found else 1.0
    recall = tp_expected / expected if expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "expected": expected, "found": found}


def _overlap(a: PiiSpan | LabelledSpan, b: LabelledSpan) -> bool:
    return a.start < b.end and b.start < a.end


def _matches(span: PiiSpan, expected: list[LabelledSpan]) -> bool:
    return any(e.kind == span.kind and _overlap(span, e) for e in expected)


def _named(example: PiiExample, start: int, end: int, kind: str) -> dict[str, str]:
    return {"id": example.id, "kind": kind, "text": example.text[start:end]}


def _streamed(masker: PiiMasker, text: str, size: int, window: int) -> str:
    stream = StreamMasker(masker, window=window)
    cuts = itertools.pairwise([*range(0, len(text), size), len(text)])
    return "".join(stream.push(text[a:b]) for a, b in cuts) + stream.flush()
