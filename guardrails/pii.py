"""PII masking with Presidio's pattern recognizers on a blank spaCy pipeline: no NER model, nothing downloaded.

Presidio needs a spaCy pipeline for tokens; a blank English one (`spacy.blank("en")`, a few kB) is written once
under the data dir and loaded from that path, which also keeps Presidio from trying to download `en_core_web_lg`.
The recognizers are regular expressions with checksums (Luhn for cards, the IBAN check digits, libphonenumber for
phones). The email recognizer's domain check uses `tldextract` with the public-suffix snapshot bundled in the wheel
and no suffix-list URL, so it never goes to the network.

Code is never masked: the recognizers run on the text's prose view (`markdown_code.py`: fenced blocks and code
spans turned into line breaks), and a detection that is code or a number by its surroundings (`_code_like.py`:
slices, versions, hex, numeric literals) is dropped. URLs are masked only when `URL` is configured: a public link
is not personal data.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.guardrails._code_like import LOOK_BEHIND, is_code_like
from chimera.guardrails.markdown_code import prose_view

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from tldextract import TLDExtract

_URL_WITH_SCHEME = 0.6  # Presidio's score for its URL patterns that require http(s)://

#: Every entity the masker can find (Presidio's names); `URL` is opt-in.
SUPPORTED_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN")
#: What is masked unless the config says otherwise.
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")


@dataclass(frozen=True)
class PiiSpan:
    """One detected entity: `text[start:end]` is a `kind`."""

    start: int
    end: int
    kind: str
    score: float


def blank_pipeline(folder: Path) -> Path:
    """A blank English spaCy pipeline saved at `folder` (written on first use, reused after)."""
    if not (folder / "config.cfg").exists():
        import spacy

        folder.parent.mkdir(parents=True, exist_ok=True)
        spacy.blank("en").to_disk(folder)
    return folder


class PiiMasker:
    """Finds and replaces PII with `<ENTITY_TYPE>` placeholders.

    Args:
        pipeline_dir: where the blank spaCy pipeline lives (created if missing).
        entities: Presidio entity names to mask.

    Every detection outside code counts whatever its score (a bare phone number scores 0.4 without a context word
    near it), except URLs without a scheme: that pattern matches file names (`setup.py`: `.py` is Paraguay's
    domain).

    Raises:
        ValueError: an entity the masker has no recognizer for.
    """

    def __init__(self, pipeline_dir: Path, *, entities: tuple[str, ...] = DEFAULT_ENTITIES) -> None:
        unknown = sorted(set(entities) - set(SUPPORTED_ENTITIES))
        if unknown:
            raise ValueError(f"no recognizer for {', '.join(unknown)}; supported: {', '.join(SUPPORTED_ENTITIES)}")
        self.entities = list(entities)
        self._analyzer = _analyzer(blank_pipeline(pipeline_dir), entities)
        self._lock = threading.Lock()  # spaCy's Language object is not documented as thread-safe

    def find(self, text: str) -> list[PiiSpan]:
        """Entities in `text` outside its code, overlapping ones resolved to the longest (then highest-scoring)."""
        return self.find_in_prose(prose_view(text))

    def find_in_prose(self, prose: str, *, before: str = "") -> list[PiiSpan]:
        """Entities in a prose view (`markdown_code.prose_view`: code turned into line breaks).

        Args:
            prose: the view to analyse; spans are offsets into it (and so into the text it was made from).
            before: the view of the text just before `prose`, when `prose` is a part of a longer text (a stream's
                segment): the code-like rules look back into it.
        """
        if not prose.strip():
            return []
        with self._lock:
            found = self._analyzer.analyze(prose, language="en", entities=self.entities)
        context = before[-LOOK_BEHIND:] + prose
        shift = len(context) - len(prose)
        kept = [
            r
            for r in found
            if (r.entity_type != "URL" or r.score >= _URL_WITH_SCHEME)
            and not is_code_like(context, r.start + shift, r.end + shift, r.entity_type)
        ]
        return _without_overlaps(kept)

    def mask(self, text: str, spans: list[PiiSpan] | None = None) -> str:
        """`text` with each entity replaced by `<KIND>` (spans: found ones to reuse, else found now)."""
        spans = self.find(text) if spans is None else spans
        out, at = [], 0
        for span in spans:
            out += [text[at : span.start], f"<{span.kind}>"]
            at = span.end
        out.append(text[at:])
        return "".join(out)


def _without_overlaps(found: "list[RecognizerResult]") -> list[PiiSpan]:
    ordered = sorted(found, key=lambda r: (r.start, -(r.end - r.start), -r.score))
    spans: list[PiiSpan] = []
    for r in ordered:
        if spans and r.start < spans[-1].end:
            continue
        spans.append(PiiSpan(r.start, r.end, r.entity_type, float(r.score)))
    return spans


def _analyzer(pipeline: Path, entities: tuple[str, ...]) -> "AnalyzerEngine":
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email recognizer with its domain check on the bundled public-suffix snapshot."""

        def validate_result(self, pattern_text: str) -> bool:
            return _suffixes()(pattern_text).fqdn != ""

    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (OfflineEmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
                       IpRecognizer(), UrlRecognizer(), UsSsnRecognizer()):  # fmt: skip
        if set(recognizer.supported_entities) & set(entities):
            registry.add_recognizer(recognizer)
    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(pipeline)}])
    nlp.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


_SUFFIX_LOCK = threading.Lock()
_SUFFIX_EXTRACTOR: "TLDExtract | None" = None


def _suffixes() -> "TLDExtract":
    """One offline `TLDExtract` per process: no suffix-list URL, no cache dir, the wheel's snapshot only."""
    global _SUFFIX_EXTRACTOR
    with _SUFFIX_LOCK:
        if _SUFFIX_EXTRACTOR is None:
            import tldextract

            _SUFFIX_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
        return _SUFFIX_EXTRACTOR
