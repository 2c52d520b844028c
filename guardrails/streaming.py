"""PII masking of a streamed answer: text goes out as soon as no later delta can make it part of an entity.

What is final follows from the recognizers `pii.py` enables (Presidio's patterns, libphonenumber's matcher):

- No entity contains a line break, or any whitespace other than space, tab, no-break space and ideographic space
  (the "soft" spaces). Every other whitespace character is a boundary no entity crosses.
- A soft space lies inside a phone number only after a digit, a leading `(` / `+`, or an extension label such as
  `ext.`, with nothing but the number's punctuation in between; inside a card number or an SSN only after a digit;
  inside an IBAN only within 43 characters of capitals, digits, spaces and hyphens that hold its start (two
  capitals and two digits, `GB82`).
- E-mail addresses, URLs and IP addresses hold no whitespace: they are whole once the word they are in ends.

So the masker releases, masked, everything up to the last whitespace that no entity can contain, and holds back
the rest: a word still arriving, or a run that could still grow into an entity. Masking the released segments one
by one gives exactly what masking the whole answer at once gives: no match crosses a segment boundary, and the
recognizers look at most one character past a match, which is that whitespace on both sides (the blank spaCy
pipeline has no lemmas, so Presidio's context words never change a score). The held-back tail is capped at
`window` characters; past the cap its start goes out anyway (never through an entity already found), so an
entity longer than the cap, e.g. a very long URL, can have its beginning sent before its end is seen.

Code is never masked (`markdown_code.py`). Before the rule above, a `CodeScanner` settles which characters are
code: inside an open fence at once, a backtick span once it closes (or its line ends), holding back at most
`window` characters of its own. Everything above then runs on the prose view, where code is line breaks, so a
code block streams out as it arrives and unmasked, and the masked answer is the one `PiiMasker.mask` gives.
"""

import re

from chimera.guardrails.base import OutputStream
from chimera.guardrails.markdown_code import CodeScanner
from chimera.guardrails.pii import PiiMasker, PiiSpan

#: Whitespace that some entity may contain; any other whitespace ends every entity.
SOFT_SPACES = frozenset(" \t\u00a0\u3000")
#: What may separate a space inside a phone number from the digit, lead or extension label before it:
#: libphonenumber's punctuation (`_VALID_PUNCTUATION`), its leads (`(`, `[`, `+`), and what its extension
#: patterns put around a label (`,`, `:`, `;`, `#`).
PHONE_GLUE = frozenset(
    "-x\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d\uff0e\uff0f \u00a0\u00ad\u200b\u2060\u3000"
    "()\uff08\uff09\uff3b\uff3d.[]/~\u2053\u223c\uff5e+\uff0b\t,:;#\uff03\uff58"
)
_PHONE_LEADS = frozenset("([\uff08\uff3b+\uff0b")
# libphonenumber's extension labels made of letters (case-insensitive), where its matcher accepts them: right
# after the number's last digit or after spaces and commas
_EXTENSION_LABEL_AT_END = re.compile(
    r"(?:^|(?<=[\d \u00a0\t,]))"
    r"(?:e?xt(?:ensi(?:o\u0301?|\u00f3))?n?|\uff45?\uff58\uff54\uff4e?|\u0434\u043e\u0431|anexo|int|\uff49\uff4e\uff54)\Z",
    re.IGNORECASE,
)
_LONGEST_LABEL = 16
_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -")
_IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}")
_IBAN_MAX_CHARS = 43  # Presidio's IBAN pattern: 4 + 6 x 5 + 5 + 4 characters at most, separators included
#: Every entity `pii.py` counts holds one of these (URLs count only with a scheme, `://`): text without them
#: needs no analysis.
_ENTITY_HINT = re.compile(r"[\d@:]")
_CONTEXT_CHARS = 64  # released text kept to judge the next boundaries (the IBAN look-back is the longest)


def can_split_at(text: str, at: int, *, text_is_whole: bool = True) -> bool:
    """Whether no entity can contain `text[at]`, a whitespace character, whatever text comes after it.

    Args:
        text: the answer so far (or its end, when `text_is_whole` is false).
        at: index of a whitespace character in `text`.
        text_is_whole: `text` starts where the answer starts; when it does not, a look-back that reaches its
            start is treated as inconclusive (not splittable).
    """
    if text[at] not in SOFT_SPACES:
        return True
    i = at
    while i > 0 and text[i - 1] in PHONE_GLUE:
        i -= 1
        if text[i] in _PHONE_LEADS:
            return False
    if i == 0:
        return text_is_whole
    if text[i - 1].isdigit():
        return False
    if _EXTENSION_LABEL_AT_END.search(text[max(0, i - _LONGEST_LABEL) : i]):
        return False
    run_start = at
    while run_start > 0 and at - run_start < _IBAN_MAX_CHARS and text[run_start - 1] in _IBAN_CHARS:
        run_start -= 1
    if run_start == 0 and not text_is_whole and at < _IBAN_MAX_CHARS:
        return False
    return _IBAN_START.search(text, run_start, at) is None


class StreamMasker(OutputStream):
    """Masks PII in one streamed answer, leaving its code as it is; `push` each delta, then `flush` at the end.

    Args:
        masker: the PII masker the output rails use.
        window: cap on the characters held back (an entity still arriving that is longer may leak its start; a
            code span still open that is longer is taken as prose), for code and for PII each.
    """

    def __init__(self, masker: PiiMasker, *, window: int = 64) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self.masker = masker
        self.window = window
        self._code = CodeScanner(hold_cap=window)
        self._pending = ""  # settled raw text not sent yet
        self._view = ""  # its prose view: code characters are line breaks
        self._context = ""  # the prose view of the end of the text already sent, to judge boundaries in `_view`
        self._context_is_whole = True  # `_context` holds everything sent so far

    def push(self, delta: str) -> str:
        self._add(*self._code.feed(delta))
        out = self._release(self._last_split())
        if len(self._pending) > self.window:
            out += self._release_over_cap()
        return out

    def flush(self) -> str:
        self._add(*self._code.finish())
        return self._release(len(self._pending))

    def _add(self, raw: str, view: str) -> None:
        self._pending += raw
        self._view += view

    def _last_split(self) -> int:
        """Length of the longest start of `_view` that ends just after a whitespace no entity can contain."""
        text, offset = self._context + self._view, len(self._context)
        for at in range(len(text) - 1, offset - 1, -1):
            if text[at].isspace() and can_split_at(text, at, text_is_whole=self._context_is_whole):
                return at + 1 - offset
        return 0

    def _release_over_cap(self) -> str:
        """Send the start of an over-long tail: up to its first space inside the cap, never through an entity."""
        spans = self._find(self._view)
        cut = len(self._view) - self.window
        spaces = [at for c in SOFT_SPACES if (at := self._view.find(c, cut - 1)) >= 0]
        cut = min(spaces) + 1 if spaces else cut  # not mid-word, unless the rest is a single word
        for span in spans:
            if span.start < cut < span.end:
                cut = span.start if span.start > 0 else span.end  # an entity longer than the cap goes out whole
        return self._release(cut, [s for s in spans if s.end <= cut])

    def _release(self, cut: int, spans: list[PiiSpan] | None = None) -> str:
        if cut <= 0:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        view, self._view = self._view[:cut], self._view[cut:]
        spans = self._find(view) if spans is None else spans
        context = self._context + view
        self._context_is_whole = self._context_is_whole and len(context) <= _CONTEXT_CHARS
        self._context = context[-_CONTEXT_CHARS:]
        return self.masker.mask(ready, spans)

    def _find(self, view: str) -> list[PiiSpan]:
        """PII in a part of the prose view that starts where the sent text ends."""
        if not _ENTITY_HINT.search(view):
            return []
        return self.masker.find_in_prose(view, before=self._context)
