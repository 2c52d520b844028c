"""Offline entity extraction by rules: capitalised spans, acronyms and codes, and the document's title.

No model runs: this is what builds the knowledge graph on an air-gapped machine, fast enough to keep up with
ingestion. It finds names ("Shirley Temple", "Kiss and Tell", "European Union") and identifiers ("BRCA1", "IL-6",
"TNF-α"); it does not find common-noun concepts, which BM25 and the dense retriever already cover.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from chimera.tools.search.analysis import STOP_WORDS

# A capitalised word, an initial or short abbreviation ("J.", "Dr."), or a number inside a name ("Apollo 11"). Only
# those short words keep a full stop: "Tell. The" is a sentence end, not one name.
_CAP_WORD = r"(?:[A-Z][a-z]?\.|[A-Z][\w'’\-]*)"
_NAME_WORD = rf"(?:{_CAP_WORD}|[0-9][\w\-]*)"
_CONNECTOR = r"(?:of|the|and|de|del|della|di|da|du|la|le|van|von|der|den|for|on|in|&)"
_CAP_SPAN = re.compile(rf"(?<![\w\-]){_CAP_WORD}(?:\s+(?:{_CONNECTOR}\s+)?{_NAME_WORD})*")
# Acronyms and codes: two or more capitals, or capitals mixed with digits ("BRCA1", "IL-6", "CD4+", "p53").
_CODE = re.compile(r"(?<![\w\-])(?:[A-Z]{2,}[\w\-+]*|[A-Za-z]+\d[\w\-+]*|[A-Z][a-z]?-?\d+[\w\-]*)(?![\w])")
_PAREN_SUFFIX = re.compile(r"\s*\([^)]*\)\s*$")
_SPACE = re.compile(r"\s+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_MAX_WORDS = 6
# A document is about its title: the title counts as this many mentions (tuned on HotpotQA dev: R@5 of the graph
# retriever alone 0.685 with 1, 0.755 with 5).
TITLE_MENTIONS = 5


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity mention: normalised id, surface name, kind (`name`, `code` or `title`), count in the text."""

    id: str
    name: str
    kind: str
    count: int


def normalize(name: str) -> str:
    """The entity id of a surface name: lower-cased, a trailing "(…)" qualifier and edge punctuation dropped."""
    name = _PAREN_SUFFIX.sub("", name)
    return _EDGE.sub("", _SPACE.sub(" ", name).strip().lower())


def _trim(span: str) -> str:
    """Drop leading and trailing stop words ("The", "In", "And") from a capitalised span."""
    parts = span.split()
    while parts and parts[0].lower().strip(".") in STOP_WORDS:
        parts.pop(0)
    while parts and parts[-1].lower().strip(".") in STOP_WORDS:
        parts.pop()
    return " ".join(parts)


def extract(text: str, *, title: str | None = None) -> list[Entity]:
    """Entities of `text`, most-mentioned first; `title` (the document's) counts as an entity of kind `title`."""
    found: Counter[str] = Counter()
    names: dict[str, str] = {}
    kinds: dict[str, str] = {}

    def note(surface: str, kind: str) -> None:
        key = normalize(surface)
        if len(key) < 2 or key in STOP_WORDS or key.isdigit():
            return
        found[key] += 1
        names.setdefault(key, surface.rstrip(".,;:"))
        kinds.setdefault(key, kind)

    for match in _CAP_SPAN.finditer(text):
        span = _trim(match.group(0))
        if not span or len(span.split()) > _MAX_WORDS:
            continue
        if " " not in span and span == match.group(0) and _starts_sentence(text, match.start()):
            continue  # "Patients were…": a capital that only marks a sentence start names nothing
        if _CODE.fullmatch(span):
            continue  # "BRCA1", "NASA": the code pass below counts it, once
        note(span, "name")
    for match in _CODE.finditer(text):
        note(match.group(0), "code")
    if title:
        key = normalize(title)
        if len(key) >= 2:
            kinds[key] = "title"
            names[key] = _PAREN_SUFFIX.sub("", title).strip()
            found[key] += TITLE_MENTIONS
    return [Entity(key, names[key], kinds[key], n) for key, n in found.most_common()]


def _starts_sentence(text: str, at: int) -> bool:
    before = text[max(0, at - 3) : at].rstrip()
    return not before or before[-1] in ".!?:;\n\"'(“"


def query_ngrams(text: str, max_words: int = _MAX_WORDS) -> set[str]:
    """Every normalised word n-gram of a query that could name an entity (for look-up in the graph's vocabulary).

    Users type names in lower case too ("who directed kiss and tell"), so phrases of two or more words match
    whatever their case. A single word matches only when written as a name (capitalised, or a code such as
    "B12"): in lower case it is an ordinary word ("cancer", "expression") that a sentence somewhere happened to
    capitalise.
    """
    surfaces = [w for w in text.split() if normalize(w)]
    tokens = [normalize(w) for w in surfaces]
    grams: set[str] = set()
    for i in range(len(tokens)):
        if tokens[i] not in STOP_WORDS and any(ch.isupper() or ch.isdigit() for ch in surfaces[i]):
            grams.add(tokens[i])
        for n in range(2, max_words + 1):
            gram = tokens[i : i + n]
            if len(gram) < n:
                break
            if gram[0] in STOP_WORDS or gram[-1] in STOP_WORDS:
                continue
            grams.add(" ".join(gram))
    return grams
