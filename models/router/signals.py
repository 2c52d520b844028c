"""Cheap lexical signals of a request: code, math and text-transform evidence in well under a millisecond.

They do two jobs: named signals explain a decision (`RouteDecision.signals`), and their values are features the
gating head learns to weigh beside the sentence embedding, so no weight below is hand-tuned into a decision.
"""

import re
from dataclasses import dataclass

import numpy as np

_PATTERNS: dict[str, re.Pattern[str]] = {
    "code_fence": re.compile(r"```|~~~"),
    "code_syntax": re.compile(
        r"\b(def|class|import|return|function|const|let|var|public|void|elif|lambda|#include|SELECT|FROM|WHERE)\b"
        r"|=>|->|::|\+\+|!=|==|;\s*$|\{\s*$|\w+\([^()\n]*\)\s*[:{]|\bassert\b|</?\w+>",
        re.M,
    ),
    "code_terms": re.compile(
        r"\b(python|javascript|typescript|java|c\+\+|c#|rust|golang|sql|regex|bash|shell|function|bug|compile[rd]?|"
        r"stack ?trace|exception|api|json|yaml|code|script|algorithm|unit tests?|refactor|debug|variable|"
        r"array|list comprehension|recursion|class|method|library|framework|git|docker|html|css)\b",
        re.I,
    ),
    "math_notation": re.compile(r"\d\s*[-+*/^×÷=<>]\s*\d|[√∑∫π∞≤≥≠]|\\(frac|sqrt|int|sum)|\b[a-z]\^\d|\d+\s*%"),
    "math_terms": re.compile(
        r"\b(calculate|compute|solve|equation|integral|derivative|probability|sum|product|how many|how much|"
        r"percent(age)?|average|mean|median|factorial|prime|algebra|matrix|remainder|divided|multiplied|"
        r"total|ratio|fraction|area|perimeter|speed|cost|costs|price|profit|\$\d)\b",
        re.I,
    ),
    "transform_verb": re.compile(
        r"\b(summari[sz]e|summary|rewrite|rephrase|paraphrase|translate|proofread|shorten|simplify|extract|"
        r"classify|sentiment|tl;?dr|write an? (email|essay|story|poem|letter|blog post|cover letter|ad|haiku|"
        r"limerick|song|joke|review|tweet|headline|title|slogan))\b",
        re.I,
    ),
    "question": re.compile(r"^\s*(who|what|when|where|why|how|is|are|can|could|do|does|should|would)\b|\?\s*$", re.I),
}

#: Texts longer than this are scanned on their head only: signals stay sub-millisecond on a 100k-character paste.
MAX_SCAN_CHARS = 16_000

#: Feature order of `Signals.vector()`: one count per pattern, then shape features.
FEATURES: tuple[str, ...] = (*_PATTERNS, "digit_share", "symbol_share", "log_length", "lines")


_SYMBOLS = frozenset("{}[]()<>=;:+-*/\\^%$#@&|_`~")


@dataclass(frozen=True)
class Signals:
    """Evidence found in one text."""

    counts: dict[str, int]
    digit_share: float
    symbol_share: float
    length: int
    lines: int

    @property
    def fired(self) -> tuple[str, ...]:
        """Names of the patterns that matched, in `FEATURES` order (question marks are not evidence)."""
        return tuple(name for name, n in self.counts.items() if n and name != "question")

    def vector(self) -> np.ndarray:
        """Bounded numeric features for the gating head.  # (len(FEATURES),)"""
        counts = [min(n, 5) / 5.0 for n in self.counts.values()]  # saturate: ten keywords are not ten times surer
        shape = [self.digit_share, self.symbol_share, np.log1p(self.length) / 10.0, min(self.lines, 50) / 50.0]
        return np.asarray(counts + shape, dtype=np.float32)


def extract_signals(text: str) -> Signals:
    """Scan `text` (its first `MAX_SCAN_CHARS`) once per pattern."""
    head = text[:MAX_SCAN_CHARS]
    scanned = max(len(head), 1)
    return Signals(
        counts={name: len(pattern.findall(head)) for name, pattern in _PATTERNS.items()},
        digit_share=sum(c.isdigit() for c in head) / scanned,
        symbol_share=sum(c in _SYMBOLS for c in head) / scanned,
        length=len(text),
        lines=text.count("\n") + 1,
    )


def has_words(text: str) -> bool:
    """Whether there is anything to route on: at least one letter or digit (emoji-only and blank texts are not)."""
    return any(c.isalnum() for c in text)
