"""Citation verification after generation: every `[n]` in an answer is checked against passage n, and the
answer's markers and its Sources list are rewritten so that they always agree.

A small model copies passage numbers unreliably: it cites [1] for what passage 3 says, cites a [4] that does not
exist, and the Sources list used to name every passage retrieved. `verify` splits the answer into claims
(sentences with their markers), scores each against its cited passages with a `SupportScorer`, and then:

- a marker whose passage does not support its claim moves to the passage that does, if one does; otherwise it is
  dropped (`unsupported="drop"`) or kept and reported unverified (`"mark"`);
- a marker naming no passage is removed; a sentence without markers that one passage clearly supports gets it;
- the passages left are numbered 1..k in order of first citation, and only they are listed as Sources;
- with `searched` given (the answer was meant to rest on the documents alone), an answer none of whose claims is
  supported, from passages none of which is relevant to the question, is replaced by a plain statement that the
  documents searched do not contain the answer.

Scoring runs an embedder on CPU (a few ms per claim): call `verify` off the event loop (`asyncio.to_thread`).
"""

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

from chimera.agents.claim_support import SupportScorer
from chimera.tools.search.types import Citation

# `[1]`, `[2, 3]`, `[1][2]`; not `items[1]` or `f(x)[0][1]` (code): no word character or bracket right before it.
_MARKER = re.compile(r"(?<![\w\])\[])(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
# A sentence ends at . ! ? (not inside 3.5 or e.g.) before whitespace that does not start a marker, or at a newline.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?!\[\d)|\n+")
# A list of sources the model wrote itself; ours replaces it.
_MODEL_SOURCES = re.compile(r"\n\s*(?:\*\*)?(?:Sources|References)(?:\*\*)?\s*:.*\Z", re.DOTALL | re.IGNORECASE)

Unsupported = Literal["drop", "mark"]
ABSTENTION_LEAD = "The documents searched"


@dataclass(frozen=True)
class Claim:
    """One sentence of the answer and what it cited before and after verification (original passage numbers)."""

    text: str
    cited: tuple[int, ...]
    kept: tuple[int, ...]
    kept_scores: tuple[float, ...]  # the support of each kept passage
    score: float  # the best support any passage gives it
    supported: bool


@dataclass(frozen=True)
class VerifiedAnswer:
    """The rewritten answer: `body` with renumbered markers, `sources` (the footer), and what was checked."""

    body: str
    sources: str  # "\n\nSources:\n[1] …" or "" when nothing is cited
    citations: tuple[Citation, ...]  # renumbered 1..k in order of first citation, `verified` and `score` set
    claims: tuple[Claim, ...]
    original: dict[int, int] = field(default_factory=dict)  # final number -> the passage's number before
    abstained: bool = False
    max_relevance: float = 0.0

    @property
    def text(self) -> str:
        """The answer as the user reads it."""
        return self.body + self.sources


def verify(
    answer: str,
    citations: Sequence[Citation],
    scorer: SupportScorer,
    *,
    question: str | None = None,
    searched: Sequence[str] | None = None,
    unsupported: Unsupported = "mark",
    attribute: bool = True,
) -> VerifiedAnswer:
    """Check the answer's citations against their passages and rewrite markers and Sources to agree.

    Args:
        answer: the model's text, without our Sources footer.
        citations: the passages the answer was written from, numbered as the model saw them.
        scorer: support and relevance scores with their thresholds.
        question: the user's question (needed for abstention).
        searched: the documents searched, for an answer that should rest on them alone (no other tool result);
            None turns abstention off. The retrieved passages' sources are named too.
        unsupported: what happens to a marker no passage supports: dropped, or kept and reported unverified.
        attribute: give an unmarked sentence the passage that supports it.
    """
    by_n = {c.n: c for c in citations}
    body = _MODEL_SOURCES.sub("", answer).rstrip()
    spans = _claim_spans(body)
    texts = [_strip_markers(body[s:e]) for s, e, _ in spans]
    order = list(by_n)
    scores = scorer.support(texts, [by_n[n].text for n in order]) if texts and order else None  # (C, P)
    claims: list[Claim] = []
    for i, (_, _, markers) in enumerate(spans):
        cited = tuple(dict.fromkeys(n for _, _, ns in markers for n in ns))
        row = {n: float(scores[i, j]) for j, n in enumerate(order)} if scores is not None else {}
        claims.append(_decide(texts[i], cited, row, scorer.support_threshold, unsupported, attribute))
    relevance = 0.0
    if question is not None and citations:
        relevance = float(scorer.relevance(question, [c.text for c in citations]).max())
    unanswered = not any(c.supported for c in claims) and relevance < scorer.relevance_threshold
    if searched is not None and question is not None and unanswered:
        names = list(dict.fromkeys([*searched, *(c.source for c in citations)]))
        return VerifiedAnswer(abstention(names), "", (), tuple(claims), abstained=True, max_relevance=relevance)
    numbers: dict[int, int] = {}  # original -> final
    for claim in claims:
        for n in claim.kept:
            numbers.setdefault(n, len(numbers) + 1)
    rewritten = _rewrite(body, spans, claims, numbers)
    checked = tuple(_checked(by_n[n], k, claims) for n, k in numbers.items())
    footer = ""
    if checked:
        labels = [c.label + ("" if c.verified else " (not verified)") for c in checked]
        footer = "\n\nSources:\n" + "\n".join(labels)
    original = {k: n for n, k in numbers.items()}
    return VerifiedAnswer(rewritten, footer, checked, tuple(claims), original, max_relevance=relevance)


@dataclass(frozen=True)
class CitationCheck:
    """How the agents check their answers' citations: the scorer, and what becomes of a marker no passage
    supports (`agent.citations` in the config)."""

    scorer: SupportScorer
    unsupported: Unsupported = "mark"

    async def verify(
        self, answer: str, citations: Sequence[Citation], *, question: str | None, searched: Sequence[str] | None
    ) -> VerifiedAnswer:
        """`verify` off the event loop (the scorer runs an embedder)."""
        return await asyncio.to_thread(
            verify, answer, citations, self.scorer, question=question, searched=searched, unsupported=self.unsupported
        )


def abstention(sources: Sequence[str]) -> str:
    """What the answer says when the documents do not contain it."""
    named = f" ({', '.join(sources)})" if sources else ""
    return f"{ABSTENTION_LEAD}{named} do not contain an answer to this question."


def is_abstention(text: str) -> bool:
    """Whether an answer is `abstention`'s statement (what `chimera eval answers` counts)."""
    return text.startswith(ABSTENTION_LEAD) and "do not contain an answer" in text


def _decide(
    text: str,
    cited: tuple[int, ...],
    row: dict[int, float],
    threshold: float,
    unsupported: Unsupported,
    attribute: bool,
) -> Claim:
    """Which of the claim's markers stay: the cited passages that support it, else the best one that does."""
    best = max(row, key=lambda n: row[n], default=None)
    best_score = row[best] if best is not None else 0.0
    existing = tuple(n for n in cited if n in row)  # dangling numbers go
    supporting = tuple(n for n in existing if row[n] >= threshold)
    if supporting:
        return Claim(text, cited, supporting, tuple(row[n] for n in supporting), best_score, True)
    if best is not None and best_score >= threshold and (existing or attribute):
        return Claim(text, cited, (best,), (best_score,), best_score, True)
    kept = existing if unsupported == "mark" else ()
    return Claim(text, cited, kept, tuple(row[n] for n in kept), best_score, False)


def _checked(citation: Citation, n: int, claims: list[Claim]) -> Citation:
    """The passage numbered `n`, verified when every claim citing it is supported, scored by the weakest."""
    citing = [c for c in claims if citation.n in c.kept]
    scores = [c.kept_scores[c.kept.index(citation.n)] for c in citing]
    return replace(citation, n=n, verified=all(c.supported for c in citing), score=min(scores))


def _claim_spans(body: str) -> list[tuple[int, int, list[tuple[int, int, tuple[int, ...]]]]]:
    """Sentences outside code, each as (start, end, markers), a marker as (start, end, numbers)."""
    code = [m.span() for m in _CODE.finditer(body)]

    def in_code(pos: int) -> bool:
        return any(s <= pos < e for s, e in code)

    cuts = [0, *(m.end() for m in _BOUNDARY.finditer(body) if not in_code(m.start())), len(body)]
    markers = [
        (_space_before(body, m.start()), m.end(), tuple(int(n) for n in re.findall(r"\d+", m.group())))
        for m in _MARKER.finditer(body)
        if not in_code(m.start())
    ]
    spans = []
    for start, end in pairwise(cuts):
        text = body[start:end]
        if not text.strip() or all(in_code(p) for p in range(start, end) if not body[p].isspace()):
            continue
        spans.append((start, end, [m for m in markers if start <= m[0] < end]))
    return spans


def _space_before(body: str, pos: int) -> int:
    """Where the blanks before `pos` start: a marker is removed with the space that led to it."""
    while pos > 0 and body[pos - 1] in " \t":
        pos -= 1
    return pos


def _strip_markers(text: str) -> str:
    return " ".join(_MARKER.sub("", text).split())


def _rewrite(
    body: str,
    spans: list[tuple[int, int, list[tuple[int, int, tuple[int, ...]]]]],
    claims: list[Claim],
    numbers: dict[int, int],
) -> str:
    """The body with each claim's markers replaced by its kept passages' final numbers, once, at the end of the
    sentence (before its full stop): "A [3] and B [3]." becomes "A and B [1]."."""
    out: list[str] = []
    pos = 0
    for (start, end, markers), claim in zip(spans, claims, strict=True):
        out.append(body[pos:start])
        sentence = body[start:end]
        if not markers and not claim.kept:
            out.append(sentence)
        else:
            bare = "".join(sentence[a - start : b - start] for a, b in _gaps(start, end, markers))
            trimmed = bare.rstrip()
            stop = len(trimmed) - 1 if trimmed.endswith((".", "!", "?", ":")) else len(trimmed)
            rendered = "".join(f"[{numbers[n]}]" for n in claim.kept)
            marks = f" {rendered}" if rendered else ""
            out.append(trimmed[:stop] + marks + trimmed[stop:] + bare[len(trimmed) :])
        pos = end
    out.append(body[pos:])
    return "".join(out)


def _gaps(start: int, end: int, markers: list[tuple[int, int, tuple[int, ...]]]) -> list[tuple[int, int]]:
    """The stretches of [start, end) between the markers."""
    edges = [start, *(p for s, e, _ in markers for p in (s, e)), end]
    return list(zip(edges[::2], edges[1::2], strict=True))
