"""The lexical analyzer BM25 and entity linking share: lower-cased word tokens, English stop words out, stemmed."""

import re
from functools import lru_cache

import Stemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_WORD = re.compile(r"\w+", re.UNICODE)
_STEMMER = Stemmer.Stemmer("english")
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=500_000)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, stop words included."""
    return _WORD.findall(text.lower())


def analyze(text: str) -> list[str]:
    """BM25 terms of `text`: lower-cased, stop words and single characters dropped, Snowball-stemmed."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]
