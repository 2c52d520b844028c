"""Text as the detectors read it: invisible characters gone, compatibility forms folded, encoded payloads exposed.

Two views of one message. `strip_invisible` is what the model gets (only characters nobody can see are removed, so
code, maths and layout survive). `for_detection` is what the regex rules and classifiers read: NFKC-folded (full-width
letters, ligatures and look-alike digits become plain ones), whitespace collapsed, and any base64 blob that decodes to
readable text appended, so an attack hidden in an encoding is judged by what it says.
"""

import base64
import binascii
import re
import sys
import unicodedata

#: Longest text the detectors read: head and tail of anything longer (a 200k-character paste is judged by both ends).
MAX_DETECTION_CHARS = 8192

# Format characters (category Cf: zero-width space/joiners, bidi overrides, soft hyphen, BOM, tag characters) carry
# no visible text but split words ("ig\u200bnore") and reorder what a reader sees, so every one is removed.
_INVISIBLE = {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"}
# Control characters other than tab and newline become spaces: they only serve to confuse tokenizers.
_CONTROLS = {cp: " " for cp in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0))}
_TABLE = {**_INVISIBLE, **_CONTROLS}

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{32,}={0,2}")
_SPACES = re.compile(r"\s+")
_MAX_DECODED_BLOBS = 4


def strip_invisible(text: str) -> str:
    """`text` without format and control characters; everything visible is kept as it was."""
    return text.translate(_TABLE)


def decoded_blobs(text: str) -> list[str]:
    """Readable texts hidden as base64 runs in `text` (at most a few, each at least mostly printable)."""
    found = []
    for match in _BASE64_RUN.finditer(text):
        blob = match.group()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):  # not base64, or not UTF-8 text underneath (UnicodeDecodeError)
            continue
        printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
        if decoded and printable / len(decoded) > 0.95 and any(ch.isalpha() for ch in decoded):
            found.append(decoded)
            if len(found) == _MAX_DECODED_BLOBS:
                break
    return found


def for_detection(text: str) -> str:
    """What detectors read: folded, invisible-free, whitespace-collapsed, decoded blobs appended, length-capped."""
    if len(text) > MAX_DETECTION_CHARS:
        half = MAX_DETECTION_CHARS // 2
        text = text[:half] + "\n" + text[-half:]
    folded = unicodedata.normalize("NFKC", strip_invisible(text))
    hidden = [unicodedata.normalize("NFKC", strip_invisible(d)) for d in decoded_blobs(folded)]
    return _SPACES.sub(" ", " ".join([folded, *hidden])).strip()
