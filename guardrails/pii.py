"""PII masking with Presidio's pattern recognizers on a blank spaCy pipeline: no NER model, nothing downloaded.

Presidio needs a spaCy pipeline for tokens; a blank English one (`spacy.blank("en")`, a few kB) is written once
under the data dir and loaded from that path, which also keeps Presidio from trying to download `en_core_web_lg`.
The recognizers are regular expressions with checksums (Luhn for cards, the IBAN check digits, libphonenumber for
phones). The email recognizer's domain check uses `tldextract` with the public-suffix snapshot bundled in the wheel
and no suffix-list URL, so it never goes to the network.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from tldextract import TLDExtract

_URL_WITH_SCHEME = 0.6  # Presidio's score for its URL patterns that require http(s)://

#: What is masked unless the config says otherwise (Presidio's entity names).
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN")


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

    Every detection counts whatever its score (a bare phone number scores 0.4 without a context word near it),
    except URLs without a scheme: that pattern matches file names (`setup.py`: `.py` is Paraguay's domain).
    """

    def __init__(self, pipeline_dir: Path, *, entities: tuple[str, ...] = DEFAULT_ENTITIES) -> None:
        self.entities = list(entities)
        self._analyzer = _analyzer(blank_pipeline(pipeline_dir), entities)
        self._lock = threading.Lock()  # spaCy's Language object is not documented as thread-safe

    def find(self, text: str) -> list[PiiSpan]:
        """Entities in `text`, overlapping ones resolved to the longest (then highest-scoring)."""
        if not text.strip():
            return []
        with self._lock:
            found = self._analyzer.analyze(text, language="en", entities=self.entities)
        return _without_overlaps([r for r in found if r.entity_type != "URL" or r.score >= _URL_WITH_SCHEME])

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
