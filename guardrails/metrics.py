"""Detection and false-positive rates of a guard over labelled prompts, as `chimera eval guard` and
`chimera guard train` report them."""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from chimera.guardrails.data import GuardExample


def rates(
    examples: Sequence[GuardExample], flagged: Sequence[bool], rails: Sequence[str | None] = ()
) -> dict[str, Any]:
    """`by_label`: detection rate of jailbreak and harmful prompts, false-positive rate of benign ones;
    `by_source`: the same rate per source (detection, or false positives for a benign source; a source with several
    labels has one entry per label, `<source> [<label>]`); `by_rail`: how many prompts of each label each rail
    flagged (when `rails` names the rail per prompt)."""
    by_label: dict[str, list[bool]] = defaultdict(list)
    by_source: dict[str, list[bool]] = defaultdict(list)
    source_label: dict[str, set[str]] = defaultdict(set)
    labels_of: dict[str, set[str]] = defaultdict(set)
    for example in examples:
        labels_of[example.source].add(example.label)
    for example, hit in zip(examples, flagged, strict=True):
        source = example.source if len(labels_of[example.source]) == 1 else f"{example.source} [{example.label}]"
        by_label[example.label].append(hit)
        by_source[source].append(hit)
        source_label[source].add(example.label)
    report: dict[str, Any] = {"n": len(examples), "by_label": {}, "by_source": {}}
    for label, hits in sorted(by_label.items()):
        key = "false_positive_rate" if label == "benign" else "detection_rate"
        report["by_label"][label] = {key: sum(hits) / len(hits), "n": len(hits)}
    for source, hits in sorted(by_source.items()):
        kind = "false_positive_rate" if source_label[source] == {"benign"} else "detection_rate"
        report["by_source"][source] = {"rate": sum(hits) / len(hits), "kind": kind, "n": len(hits)}
    if rails:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for example, rail in zip(examples, rails, strict=True):
            if rail:
                counts[rail][example.label] += 1
        report["by_rail"] = {rail: dict(per_label) for rail, per_label in sorted(counts.items())}
    return report


def format_rates(report: dict[str, Any]) -> list[str]:
    """The rates as table lines."""
    lines = [f"{'label':<12}{'rate':>10}{'n':>7}"]
    for label, row in report["by_label"].items():
        rate = row.get("detection_rate", row.get("false_positive_rate"))
        what = "FP" if label == "benign" else "detected"
        lines.append(f"{label:<12}{rate:>10.4f}{row['n']:>7}  ({what})")
    lines += ["", f"{'source':<70}{'rate':>8}{'n':>6}"]
    for source, row in report["by_source"].items():
        what = "FP" if row["kind"] == "false_positive_rate" else "detected"
        lines.append(f"{source[:69]:<70}{row['rate']:>8.4f}{row['n']:>6}  ({what})")
    if report.get("by_rail"):
        lines += ["", "flagged by rail (per label):"]
        for rail, per_label in report["by_rail"].items():
            lines.append(f"  {rail:<34}" + "  ".join(f"{k}={v}" for k, v in sorted(per_label.items())))
    return lines
