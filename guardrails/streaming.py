"""PII masking of a streamed answer: deltas go out as soon as no later delta can turn them into part of an entity.

The masker holds back the last `window` characters (and any entity that reaches into them). An entity shorter than
the window that is still arriving lies wholly inside the held-back tail, so a phone number or e-mail address split
across deltas is masked whole; text before the tail is final and goes out masked. Longer entities (a URL longer
than the window) can have their beginning sent before their end is seen.
"""

from chimera.guardrails.base import OutputStream
from chimera.guardrails.pii import PiiMasker


class StreamMasker(OutputStream):
    """Masks PII in one streamed answer; `push` each delta, then `flush` at the end."""

    def __init__(self, masker: PiiMasker, *, window: int = 64) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self.masker = masker
        self.window = window
        self._pending = ""

    def push(self, delta: str) -> str:
        self._pending += delta
        if len(self._pending) <= self.window:
            return ""
        spans = self.masker.find(self._pending)
        cut = len(self._pending) - self.window
        # never cut through a word: an entity still arriving may begin with it (unless the "word" is longer than
        # the window, e.g. a base64 blob, which would otherwise stall the stream)
        word_start = cut
        while word_start > 0 and not self._pending[word_start - 1].isspace() and cut - word_start < self.window:
            word_start -= 1
        if word_start == 0 or self._pending[word_start - 1].isspace():
            cut = word_start
        for span in spans:  # and never through an entity (some contain spaces): hold all of it back
            if span.start < cut < span.end:
                cut = span.start
        if cut == 0:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self.masker.mask(ready, [s for s in spans if s.end <= cut])

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return self.masker.mask(rest) if rest else ""
