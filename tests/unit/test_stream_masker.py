"""Streamed PII masking (`StreamMasker`): the same masked text as masking the whole answer, with prose released at
once. Runs the real Presidio recognizers on the blank spaCy pipeline (no NeMo)."""

import itertools
import random
import re
import sys

import pytest

from chimera.guardrails.pii import SUPPORTED_ENTITIES, PiiMasker
from chimera.guardrails.streaming import PHONE_GLUE, SOFT_SPACES, StreamMasker, can_split_at

ENTITIES = [
    "ada.lovelace@example.org",
    "j.doe+news@mail.example.co.uk",
    "+1 212 736 5000",
    "(212) 736-5000",
    "212.736.5000",
    "212 736 5000 ext. 42",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "192.168.10.7",
    "2001:db8::8a2e:370:7334",
    "https://example.com/a/b?c=1",
    "http://docs.example.org/path",
    "536-22-8726",
    "536 22 8726",
]
PROSE = [
    "Sure,", "here", "is", "the", "answer.", "Write", "to", "or", "call", "me", "today", "(see", "below)", "-", "and",
    "at", "12", "noon", "x", "int", "next", "text", "IBAN", "ext", "Box", "5", "%", "step", "3:", "a-b", "OK",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", ", ", "\n", "\n\n", "\t", ". ", ": "]


@pytest.fixture(scope="module")
def masker(tmp_path_factory: pytest.TempPathFactory) -> PiiMasker:
    # every entity, URLs (opt-in) included: the stream must hold back whatever a configuration masks
    return PiiMasker(tmp_path_factory.mktemp("guard") / "spacy-blank-en", entities=SUPPORTED_ENTITIES)


def _answer(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(3, 14)):
        if rng.random() < 0.3:
            parts.append(rng.choice(ENTITIES))
        else:
            parts.extend(rng.choice(PROSE) for _ in range(rng.randint(1, 4)))
    text = ""
    for part in parts:
        text += part + rng.choice(SEPARATORS)
    return text[: -1 if rng.random() < 0.5 else None]


def _streamed(masker: PiiMasker, text: str, cuts: list[int], window: int = 64) -> tuple[str, list[str]]:
    stream = StreamMasker(masker, window=window)
    bounds = [0, *cuts, len(text)]
    pieces = [stream.push(text[a:b]) for a, b in itertools.pairwise(bounds)]
    pieces.append(stream.flush())
    return "".join(pieces), pieces


def test_random_splits_mask_exactly_like_the_whole_text(masker: PiiMasker) -> None:
    rng = random.Random(13)
    masked_any = 0
    for trial in range(150):
        text = _answer(rng)
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 40))))
        expected = masker.mask(text)
        got, _ = _streamed(masker, text, cuts)
        assert got == expected, (trial, text, cuts)
        masked_any += expected != text
    assert masked_any > 50  # the generator does produce entities the masker finds


def test_every_entity_split_at_every_point_is_masked(masker: PiiMasker) -> None:
    for entity in ENTITIES:
        text = f"Reach me at {entity} tomorrow."
        expected = masker.mask(text)
        assert entity not in expected, entity
        for cut in range(12, 12 + len(entity) + 1):
            assert _streamed(masker, text, [cut])[0] == expected, (entity, cut)
        assert _streamed(masker, text, list(range(1, len(text))))[0] == expected, entity  # one character a delta


def test_prose_goes_out_as_it_arrives(masker: PiiMasker) -> None:
    stream = StreamMasker(masker, window=64)
    assert stream.push("Hello there, how") == "Hello there, "
    assert stream.push(" are") == "how "
    assert stream.push(" you?\nFine") == "are you?\n"
    assert stream.flush() == "Fine"


def test_a_run_that_could_still_become_an_entity_is_held_back(masker: PiiMasker) -> None:
    stream = StreamMasker(masker, window=64)
    assert stream.push("Call 212 736") == "Call "
    assert stream.push(" 5000 now ") == "<PHONE_NUMBER> now "
    assert stream.push("or GB82 WEST") == "or "  # an IBAN's start: its groups may go on
    assert stream.push(" 1234 5698 7654 32 thanks") == ""
    assert stream.push(" and bye") == "<IBAN_CODE> thanks and "
    assert stream.flush() == "bye"


def test_the_tail_held_back_is_capped(masker: PiiMasker) -> None:
    stream = StreamMasker(masker, window=16)
    out = stream.push("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15")  # digits and spaces: never a safe split
    assert out and len("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15") - len(out) <= 16
    blob = "QUJD" * 100  # a word longer than the cap still streams
    assert len(stream.push(blob)) >= len(blob) - 16


def test_phone_punctuation_and_spaces_match_libphonenumber() -> None:
    """The boundary rule copies libphonenumber's character classes; fail loudly if a new release changes them."""
    from phonenumbers import phonenumberutil

    punctuation = re.compile(f"[{phonenumberutil._VALID_PUNCTUATION}]")
    assert all(c in PHONE_GLUE for c in map(chr, range(sys.maxunicode + 1)) if punctuation.fullmatch(c))
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert {c for c in spaces if punctuation.fullmatch(c) or c in " \u00a0\t"} <= SOFT_SPACES


@pytest.mark.parametrize(
    ("text", "splittable"),
    [
        ("Hello there", True),
        ("call 212", False),
        ("call (", False),
        ("call +", False),
        ("212 736 5000 ext", False),
        ("212 736 5000 ext.", False),
        ("the next", True),
        ("a point", True),
        ("GB82 WEST", False),
        ("at 12 noon", True),  # IBANs start with two capitals
        ("pay GB82", False),
        ("line\n", True),
    ],
)
def test_boundary_rule(text: str, splittable: bool) -> None:
    assert can_split_at(text + " ", len(text)) is splittable


CODE = [
    "```python\nxs = items[::2]\nmail = 'ada@example.org'\n```\n",
    "~~~\nssh deploy@10.0.0.12 -p 2222\n~~~\n",
    "`x[1::3]`",
    "`git config user.email kim@example.org`",
    "``a`b``",
    "`",  # an unmatched backtick: the text after it is prose
    "```x```",
    "v1.2.3.4",
    "ts = 1700000000",
    "0xdeadbeef",
]


def test_code_streams_unmasked_and_exactly_like_the_whole_text(masker: PiiMasker) -> None:
    rng = random.Random(29)
    kept_code = 0
    for trial in range(120):
        parts = [
            rng.choice(CODE) if rng.random() < 0.4 else rng.choice(ENTITIES + PROSE) for _ in range(rng.randint(2, 10))
        ]
        text = "".join(part + rng.choice(SEPARATORS) for part in parts)
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 30))))
        expected = masker.mask(text)
        got, _ = _streamed(masker, text, cuts)
        assert got == expected, (trial, text, cuts)
        kept_code += "items[::2]" in expected or "kim@example.org" in expected
    assert kept_code > 10  # the generator does produce code the masker leaves alone


def test_an_open_code_block_goes_out_as_it_arrives_unmasked(masker: PiiMasker) -> None:
    stream = StreamMasker(masker, window=64)
    assert stream.push("Run:\n```sh\n") == "Run:\n```sh\n"
    assert stream.push("ssh ada@10.0.0.1") == "ssh ada@10.0.0.1"  # inside the fence: nothing held back
    assert stream.push(" -p 2222\n```\nor mail ada@example.org") == " -p 2222\n```\nor mail "
    assert stream.push(" `ada@example.org`") == "<EMAIL_ADDRESS> "  # the closing run may still grow
    assert stream.push(" ok") == "`ada@example.org` "
    assert stream.flush() == "ok"


def test_window_must_be_positive(masker: PiiMasker) -> None:
    with pytest.raises(ValueError):
        StreamMasker(masker, window=0)
