"""Cheap lexical signals of a request: code, math and text-transform evidence in well under a millisecond.

They do two jobs: named signals explain a decision (`RouteDecision.signals`), and their values are features the
gating head learns to weigh beside the sentence embedding, so no weight below is hand-tuned into a decision.
"""

import functools
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
    # "write code that computes X" (code) against "compute X" (math): a request for a program, or its I/O vocabulary
    "code_request": re.compile(
        r"\b(write|create|implement|build|develop|design|make|code|program)\b[^.?!\n]{0,40}?\b(program|function|"
        r"script|class|method|app|application|game|module|library|cli|tool|api|endpoint|query|regex|simulator|parser|"
        r"implementation|bot|website|web ?page|interface|algorithm)s?\b"
        r"|\b(implement|compile|refactor|debug)\w*\b|\bthe (user|program|function|method|class) "
        r"(enters?|should|returns?|takes?)\b|\b(returns?|inputs?|outputs?|arguments?|parameters?|test cases?|"
        r"edge cases?|constraints?)\b|\b[a-z_]+\([^()\n]{0,40}\)",
        re.I,
    ),
    "math_question": re.compile(
        r"\b(how (many|much|long|far|fast|old)|what (is|was|are|will be) the (value|total|number|probability|area|"
        r"sum|product|ratio|speed|cost|price|mean|average)|find (the|all|x|y)|what percent|evaluate|simplify|prove|"
        r"determine the|calculate the|compute the)\b|\$[^$\n]+\$|\\\(|\\mathrm|\b\d+(\.\d+)?\s*(km|m|s|kg|g|cm|mm|"
        r"ml|l|hours?|minutes?|seconds?|dollars?|cents?|miles?|feet|inches|mph|k|mol|j|kj|n|pa|ev|hz)\b",
        re.I,
    ),
    "numbers": re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w.])"),
    # a piece of writing asked for (text), against a question wrapped in a writing instruction (chat)
    "writing_request": re.compile(
        r"\b(write|compose|draft|create|generate|craft)\b[^.?!\n]{0,40}?\b(essay|story|stories|poem|letter|email|"
        r"e-mail|article|blog|post|speech|script|report|proposal|review|description|summary|song|lyrics|ad|"
        r"advert\w*|copy|slogan|tweet|caption|bio|resume|cv|paragraph|introduction|conclusion|dialogue|narrative|"
        r"fanfic\w*|novel|chapter|outline|pitch|memo|newsletter|press release|limerick|haiku|sonnet)s?\b"
        r"|\b\d{3,5}[- ]words?\b|\b(continue|continuation of) (this|the|the following)\b|\b(tone|style|formal|"
        r"casual|concise|tighten|polish|edit|revise|reword)\b",
        re.I,
    ),
    "given_text": re.compile(
        r"\b(the following|this|the given|the above|below|the provided|this piece of) (text|passage|paragraph|"
        r"article|review|sentence|sentences|story|email|document|poem|essay|dialogue|conversation|tweet|bio|excerpt|"
        r"reference text|statement|note|letter)\b|:\s*\n|\"[^\"\n]{60,}\"",
        re.I,
    ),
}

#: Patterns that shape a decision but are not evidence for one expert on their own: not listed in `fired`.
_CONTEXT = frozenset({"question", "numbers"})

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
        """Names of the patterns that matched, in `FEATURES` order (questions and bare numbers are not evidence)."""
        return tuple(name for name, n in self.counts.items() if n and name not in _CONTEXT)

    def vector(self) -> np.ndarray:
        """Bounded numeric features for the gating head.  # (len(FEATURES),)"""
        counts = [min(n, 5) / 5.0 for n in self.counts.values()]  # saturate: ten keywords are not ten times surer
        shape = [self.digit_share, self.symbol_share, np.log1p(self.length) / 10.0, min(self.lines, 50) / 50.0]
        return np.asarray(counts + shape, dtype=np.float32)


@functools.lru_cache(maxsize=256)  # a decision reads a turn's signals twice: as features, then to explain itself
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
