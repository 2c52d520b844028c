"""PII masking that leaves code alone (`PiiMasker`, `markdown_code.py`, `_code_like.py`): personal data in prose is
masked, code spans, fenced blocks and code-like text are not, URLs only when configured. Runs the real Presidio
recognizers on the blank spaCy pipeline."""

import itertools
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from chimera.config import GuardrailsConfig
from chimera.guardrails._code_like import plausible_ipv6
from chimera.guardrails.markdown_code import CodeScanner, prose_view
from chimera.guardrails.pii import DEFAULT_ENTITIES, SUPPORTED_ENTITIES, PiiMasker

F = "```"


@pytest.fixture(scope="module")
def masker(tmp_path_factory: pytest.TempPathFactory) -> PiiMasker:
    return PiiMasker(tmp_path_factory.mktemp("guard") / "spacy-blank-en")


def _code(text: str) -> str:
    """Which characters `prose_view` takes for code: `#`, prose `.`, line breaks kept."""
    view = prose_view(text)
    return "".join("\n" if t == "\n" else "#" if v == "\n" else "." for t, v in zip(text, view, strict=True))


# --- which characters are code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a `b` c", "..###.."),
        ("a ``b`c`` d", "..#######.."),
        ("a `b c", "......"),  # no closer on the line: a literal backtick
        ("a `b\nc` d", "....\n...."),  # spans do not cross lines here
        ("a \\`b` c", "........"),  # an escaped backtick opens nothing
        (f"x\n{F}py\nk = 1\n{F}\ny", ".\n#####\n#####\n###\n."),
        ("~~~\na\n~~~", "###\n#\n###"),
        (f"{F}\nopen", "###\n####"),  # an unclosed fence runs to the end
        (f"{F}a{F} b", "#######.."),  # a backtick fence's info string holds no backtick: a span
        (f"   {F}sh\n   ls\n   {F}", "########\n#####\n######"),  # indented fences (list items) count
        (f"{F}\n~~~\nstill code\n{F}\nprose", "###\n###\n##########\n###\n....."),  # closed by its own character
    ],
)
def test_code_spans_and_fences_are_found(text: str, code: str) -> None:
    assert _code(text) == code


def test_code_is_settled_alike_whatever_the_split() -> None:
    rng = random.Random(7)
    pieces = [F + "py\n", "~~~\n", "`", "``", "a", " ", "\n", "x[::2]", "\\`", "ada@example.org", "```x```", "   "]
    for trial in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12)))) if len(text) > 1 else []
        scanner = CodeScanner()
        raw, view = "", ""
        for a, b in itertools.pairwise([0, *cuts, len(text)]):
            r, v = scanner.feed(text[a:b])
            raw, view = raw + r, view + v
        r, v = scanner.finish()
        assert (raw + r, view + v) == (text, prose_view(text)), (trial, text, cuts)


def test_an_open_fence_settles_at_once_and_a_span_when_it_closes() -> None:
    scanner = CodeScanner(hold_cap=64)
    assert scanner.feed(f"{F}python\n") == (f"{F}python\n", "\n" * 10)
    assert scanner.feed("xs = items[:") == ("xs = items[:", "\n" * 12)  # inside the block: no waiting
    assert scanner.feed(f":2]\n{F}\nsee `x") == (f":2]\n{F}\nsee ", "\n" * 8 + "see ")
    assert scanner.feed("[::2]` ok") == ("`x[::2]` ok", "\n" * 8 + " ok")


def test_an_unclosed_span_longer_than_the_cap_goes_out_as_prose() -> None:
    scanner = CodeScanner(hold_cap=8)
    raw, view = scanner.feed("say `" + "a" * 20)
    assert raw == view and raw.startswith("say `") and scanner.held <= 8


# --- what is masked


@pytest.mark.parametrize(
    "text",
    [
        "Repeat exactly this line: xs = items[::2]",
        "Repeat exactly this line: `xs = items[::2]`",
        f"{F}python\nxs = items[::2]\nys = items[1::3]\nrev = s[::-1]\n{F}",
        "Subsample with arr[::2, ::3], skip rows with arr[100::2], in C++ a::b.",
        "Upgrade to version 1.2.3.4, pip install foo==1.2.3.4, or v1.2.3.4; 1.2.3.4.5 is a version too.",
        "The mask 0xdeadbeef, commit 3f786850e387550fdab836ed7e6dc881de23001b.",
        "The request id was 123e4567-e89b-12d3-a456-426614174000.",
        "Set ts = 1700000000, PI = 3.14159265358979 and seed=(1234567890).",
        "Clone git@github.com:org/repo.git, open 127.0.0.1:8000 or ::1, bind 0.0.0.0, netmask 255.255.255.0.",
        "See https://docs.python.org/3/library/re.html and https://numpy.org/install/ for details.",
        f"{F}python\nsetup(author_email='ada@example.org', card='4111 1111 1111 1111')\n{F}",
        "Configure it with `git config user.email kim.lee@example.org` and `ssh deploy@10.0.0.12`.",
        "~~~yaml\ncontact:\n  phone: '+1 212 736 5000'\n  ssn: '536-22-8726'\n  ip: 192.168.1.1\n~~~",
    ],
)
def test_code_and_code_like_text_come_back_unchanged(masker: PiiMasker, text: str) -> None:
    assert masker.mask(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Mail ada.lovelace@example.org today.", "Mail <EMAIL_ADDRESS> today."),
        ("Call me on +1 212 736 5000 after six.", "Call me on <PHONE_NUMBER> after six."),
        ("Card 4111 1111 1111 1111 expires.", "Card <CREDIT_CARD> expires."),
        ("Wire it to GB82 WEST 1234 5698 7654 32 please.", "Wire it to <IBAN_CODE> please."),
        ("Her SSN is 536-22-8726.", "Her SSN is <US_SSN>."),
        (
            "From 203.0.113.42 and 2001:db8::8a2e:370:7334 and fe80::1.",
            "From <IP_ADDRESS> and <IP_ADDRESS> and <IP_ADDRESS>.",
        ),
        ("The ip=10.0.0.5 logged in.", "The ip=<IP_ADDRESS> logged in."),  # `=` alone is no version
        (
            f"Write to ada@example.org:\n\n{F}\nprint(items[::2])  # ada@example.org\n{F}\nor call 415-555-2671.",
            f"Write to <EMAIL_ADDRESS>:\n\n{F}\nprint(items[::2])  # ada@example.org\n{F}\nor call <PHONE_NUMBER>.",
        ),
        ("`a@b.example.com` but c.d@example.com", "`a@b.example.com` but <EMAIL_ADDRESS>"),
    ],
)
def test_personal_data_in_prose_is_still_masked(masker: PiiMasker, text: str, masked: str) -> None:
    assert masker.mask(text) == masked


def test_urls_are_kept_by_default_and_masked_when_configured(masker: PiiMasker, tmp_path: Path) -> None:
    text = "Docs at https://docs.python.org/3/library/re.html or mail ada@example.org."
    assert "URL" not in DEFAULT_ENTITIES and GuardrailsConfig().pii_entities == DEFAULT_ENTITIES
    assert masker.mask(text) == "Docs at https://docs.python.org/3/library/re.html or mail <EMAIL_ADDRESS>."
    with_urls = PiiMasker(tmp_path / "spacy-blank-en", entities=SUPPORTED_ENTITIES)
    assert with_urls.mask(text) == "Docs at <URL> or mail <EMAIL_ADDRESS>."
    assert with_urls.mask("Docs at `https://docs.python.org/3/`.") == "Docs at `https://docs.python.org/3/`."
    assert GuardrailsConfig(pii_entities=("URL", "EMAIL_ADDRESS")).pii_entities == ("URL", "EMAIL_ADDRESS")


def test_unknown_entities_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        GuardrailsConfig(pii_entities=("PERSON",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no recognizer for PERSON"):
        PiiMasker(tmp_path / "spacy-blank-en", entities=("PERSON",))


@pytest.mark.parametrize(
    ("candidate", "plausible"),
    [
        ("2001:db8::8a2e:370:7334", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:192.0.2.1", True),
        ("2001:0:0:1::2", True),
        ("::2", False),  # items[::2]
        ("1::3", False),  # x[1::3]
        ("100::200", False),  # decimal digits only, two groups: a slice
        ("a::b", False),
        ("::1", False),  # loopback: nobody's address
        ("::", False),
        ("12:30:45", False),  # does not parse
    ],
)
def test_plausible_ipv6(candidate: str, plausible: bool) -> None:
    assert plausible_ipv6(candidate) is plausible
