"""Score the configured rails on labelled prompts (`chimera eval guard`): detection per label and source,
false positives on benign prompts, and the input rails' latency as a request pays it (NeMo included)."""

import statistics
import time
from typing import Any

from chimera.guardrails.base import Rails
from chimera.guardrails.data import GuardExample
from chimera.guardrails.metrics import format_rates, rates
from chimera.messages import ChatMessage


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def evaluate_guard(rails: Rails, examples: list[GuardExample]) -> dict[str, Any]:
    """Run the input rails once per prompt, as a one-message conversation; flagged = blocked."""
    flagged, which, latencies = [], [], []
    for example in examples:
        began = time.perf_counter()
        verdict = await rails.check_input([ChatMessage(role="user", content=example.text)])
        latencies.append(1000 * (time.perf_counter() - began))
        flagged.append(not verdict.allowed)
        which.append(verdict.rail if not verdict.allowed else None)
    report = rates(examples, flagged, which)
    report["latency_ms"] = {
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "mean": statistics.fmean(latencies),
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a human reads it."""
    latency = report["latency_ms"]
    head = [f"n={report['n']}  input rails latency: p50={latency['p50']:.2f} ms  p99={latency['p99']:.2f} ms", ""]
    return "\n".join(head + format_rates(report))
